package acremu

import (
	"net/http"
	"strconv"
	"testing"
	"time"
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
