package acremu

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestThrottling(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	for _, tg := range []string{"a", "b", "c", "d"} {
		r.Put("app", Artifact{Tags: []string{tg}})
	}
	alice := login(t, hc, r, Identity{Name: "alice", Grants: all}, purgeScope("app"))
	bob := login(t, hc, r, Identity{Name: "bob", Grants: all}, purgeScope("app"))
	r.SetLimits(Limits{Read: 3, Delete: 2})
	list := r.URL() + "/acr/v1/app/_tags"

	for i := range 3 {
		if resp := do(t, hc, http.MethodGet, list, alice, nil); resp.status != 200 {
			t.Fatalf("read %d: %d", i, resp.status)
		}
	}
	resp := do(t, hc, http.MethodGet, list, alice, nil)
	if resp.status != http.StatusTooManyRequests || resp.errorCode(t) != CodeTooManyRequests {
		t.Fatalf("4th read: %d %s", resp.status, resp.body)
	}
	secs, err := strconv.Atoi(resp.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Errorf("Retry-After %q", resp.header.Get("Retry-After"))
	}
	// Advancing the emulator clock does not reset the wall-clock window.
	r.Advance(10 * time.Minute)
	alice = login(t, hc, r, Identity{Name: "alice", Grants: all}, purgeScope("app"))
	if resp := do(t, hc, http.MethodGet, list, alice, nil); resp.status != http.StatusTooManyRequests {
		t.Errorf("after Advance: %d", resp.status)
	}
	// Other identities and other classes have their own windows.
	if resp := do(t, hc, http.MethodGet, list, bob, nil); resp.status != 200 {
		t.Errorf("bob read: %d", resp.status)
	}
	for i, tg := range []string{"a", "b"} {
		if resp := do(t, hc, http.MethodDelete, list+"/"+tg, alice, nil); resp.status != http.StatusAccepted {
			t.Errorf("alice delete %d: %d", i, resp.status)
		}
	}
	resp = do(t, hc, http.MethodDelete, list+"/c", alice, nil)
	if resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") == "" {
		t.Errorf("3rd delete: %d %v", resp.status, resp.header)
	}
	if !r.HasTag("app", "c") {
		t.Error("a throttled delete was performed")
	}
	// PATCH (write) is unlimited here.
	if resp := do(t, hc, http.MethodPatch, list+"/c", alice, stringsReader(`{"deleteEnabled":true}`)); resp.status != 200 {
		t.Errorf("patch: %d", resp.status)
	}
	if st := r.Stats(); st.Throttled != 3 {
		t.Errorf("Throttled = %d, want 3", st.Throttled)
	}

	// A short window reopens on the wall clock; Retry-After is at least 1.
	r.SetLimits(Limits{Window: time.Second, Read: 1})
	do(t, hc, http.MethodGet, list, alice, nil)
	resp = do(t, hc, http.MethodGet, list, alice, nil)
	if resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") != "1" {
		t.Errorf("short window: %d Retry-After %q", resp.status, resp.header.Get("Retry-After"))
	}
	time.Sleep(1100 * time.Millisecond)
	if resp := do(t, hc, http.MethodGet, list, alice, nil); resp.status != 200 {
		t.Errorf("after the window: %d", resp.status)
	}
	// oauth2 is never throttled.
	for range 3 {
		login(t, hc, r, Identity{Name: "alice", Grants: all}, purgeScope("app"))
	}
}

func TestRegistryWideWriteLimit(t *testing.T) {
	t.Parallel()
	r := start(t, Options{})
	hc := httpClient(t, true)
	for _, tg := range []string{"a", "b", "c", "d", "e", "f"} {
		r.Put("app", Artifact{Tags: []string{tg}})
	}
	// Two identities, as two instances (or an instance and a CI pipeline)
	// of one registry.
	alice := login(t, hc, r, Identity{Name: "alice", Grants: all}, purgeScope("app"))
	bob := login(t, hc, r, Identity{Name: "bob", Grants: all}, purgeScope("app"))
	r.SetLimits(Limits{RegistryWrites: 3, RegistryWindow: time.Second})
	list := r.URL() + "/acr/v1/app/_tags"
	unlock := func() io.Reader { return stringsReader(`{"deleteEnabled":true}`) }

	// Deletes and PATCHes of both identities draw on one limit.
	require.Equal(t, http.StatusAccepted, do(t, hc, http.MethodDelete, list+"/a", alice, nil).status, "alice delete")
	require.Equal(t, http.StatusOK, do(t, hc, http.MethodPatch, list+"/b", bob, unlock()).status, "bob patch")
	require.Equal(t, http.StatusAccepted, do(t, hc, http.MethodDelete, list+"/c", bob, nil).status, "bob delete")
	for _, who := range []string{alice, bob} {
		resp := do(t, hc, http.MethodDelete, list+"/d", who, nil)
		require.Equal(t, http.StatusTooManyRequests, resp.status, "4th write: %s", resp.body)
		assert.Equal(t, CodeTooManyRequests, resp.errorCode(t))
		assert.Contains(t, string(resp.body), "write operations on this registry")
		assert.Equal(t, "1", resp.header.Get("Retry-After"), "whole seconds")
	}
	assert.True(t, r.HasTag("app", "d"), "a throttled delete was performed")
	// Reads are not writes.
	for range 5 {
		require.Equal(t, http.StatusOK, do(t, hc, http.MethodGet, list, alice, nil).status)
	}
	st := r.Stats()
	assert.Equal(t, 2, st.Throttled)
	assert.Equal(t, 2, st.ThrottledRegistry)
	// The window reopens on the wall clock.
	time.Sleep(1100 * time.Millisecond)
	assert.Equal(t, http.StatusAccepted, do(t, hc, http.MethodDelete, list+"/d", bob, nil).status, "after the window")

	// A per-identity limit and the registry's apply together; a request one
	// refuses is not counted by the other.
	r.SetLimits(Limits{Delete: 1, RegistryWrites: 2, RegistryWindow: time.Minute})
	require.Equal(t, http.StatusAccepted, do(t, hc, http.MethodDelete, list+"/e", alice, nil).status)
	resp := do(t, hc, http.MethodDelete, list+"/f", alice, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.status, "alice over her own limit")
	assert.Contains(t, string(resp.body), "of this identity")
	require.Equal(t, http.StatusAccepted, do(t, hc, http.MethodDelete, list+"/f", bob, nil).status,
		"alice's refused delete must not count for the registry")
	resp = do(t, hc, http.MethodPatch, list+"/b", bob, unlock())
	require.Equal(t, http.StatusTooManyRequests, resp.status, "third registry write in a minute")
	secs, err := strconv.Atoi(resp.header.Get("Retry-After"))
	require.NoError(t, err)
	assert.True(t, secs >= 50 && secs <= 60, "Retry-After %d: the rest of the minute", secs)
}
