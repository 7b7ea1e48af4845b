package acremu

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// statuses performs n tag listings and returns their statuses (0 = transport error).
func statuses(t *testing.T, hc *http.Client, r *Registry, tok string, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		resp, err := send(t, hc, http.MethodGet, r.URL()+"/acr/v1/app/_tags", tok, nil)
		if err == nil {
			out[i] = resp.status
		}
	}
	return out
}

func faultyRegistry(t *testing.T, f Faults) (*Registry, *http.Client, string) {
	t.Helper()
	r := start(t, Options{})
	hc := httpClient(t, false)
	for i := range 5 {
		r.Put("app", Artifact{Tags: []string{fmt.Sprint("t", i)}})
	}
	tok := login(t, hc, r, Identity{Name: "id", Grants: all}, purgeScope("app"))
	r.SetFaults(f)
	return r, hc, tok
}

func TestFaults(t *testing.T) {
	t.Parallel()
	t.Run("error rate 1", func(t *testing.T) {
		r, hc, tok := faultyRegistry(t, Faults{ErrorRate: 1})
		seen := map[int]bool{}
		for range 20 {
			resp := do(t, hc, http.MethodGet, r.URL()+"/acr/v1/app/_tags", tok, nil)
			seen[resp.status] = true
			code := resp.errorCode(t)
			if code != CodeInternalError && code != CodeServiceUnavailable {
				t.Errorf("code %s", code)
			}
		}
		if !seen[500] || !seen[503] || len(seen) != 2 {
			t.Errorf("statuses %v, want 500 and 503", seen)
		}
		// Faults are data plane only: tokens are still issued.
		login(t, hc, r, Identity{Name: "other", Grants: all}, purgeScope("app"))
		if resp := do(t, hc, http.MethodDelete, r.URL()+"/acr/v1/app/_tags/t1", tok, nil); resp.status < 500 || !r.HasTag("app", "t1") {
			t.Errorf("faulted delete: %d, performed=%v", resp.status, !r.HasTag("app", "t1"))
		}
		if st := r.Stats(); st.Faults != 21 {
			t.Errorf("Faults = %d, want 21", st.Faults)
		}
	})

	t.Run("deterministic per seed", func(t *testing.T) {
		f := Faults{ErrorRate: 0.2, DropRate: 0.1, Seed: 42}
		r1, hc1, tok1 := faultyRegistry(t, f)
		r2, hc2, tok2 := faultyRegistry(t, f)
		a := statuses(t, hc1, r1, tok1, 60)
		b := statuses(t, hc2, r2, tok2, 60)
		if !slices.Equal(a, b) {
			t.Errorf("same seed, different outcomes:\n%v\n%v", a, b)
		}
		bad := 0
		for _, s := range a {
			if s != 200 {
				bad++
			}
		}
		if bad < 8 || bad > 30 {
			t.Errorf("%d of 60 failed, want about 18", bad)
		}
		if slices.Index(a, 0) < 0 || slices.Index(a, 200) < 0 {
			t.Errorf("outcomes %v lack a drop or a success", a)
		}
		r1.SetFaults(f) // restarts the sequence
		if c := statuses(t, hc1, r1, tok1, 60); !slices.Equal(a, c) {
			t.Errorf("SetFaults did not restart the sequence")
		}
		r2.SetFaults(Faults{ErrorRate: 0.2, DropRate: 0.1, Seed: 7})
		if c := statuses(t, hc2, r2, tok2, 60); slices.Equal(a, c) {
			t.Errorf("another seed gave the same outcomes")
		}
	})

	t.Run("drop", func(t *testing.T) {
		r, hc, tok := faultyRegistry(t, Faults{DropRate: 1})
		if _, err := send(t, hc, http.MethodDelete, r.URL()+"/acr/v1/app/_tags/t1", tok, nil); err == nil {
			t.Fatal("dropped request got an answer")
		}
		if !r.HasTag("app", "t1") || len(r.Deletes()) != 0 {
			t.Error("a dropped delete was performed")
		}
		if st := r.Stats(); st.Faults != 1 || st.Requests["delete_tag"] != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("lost response performs the delete", func(t *testing.T) {
		r, hc, tok := faultyRegistry(t, Faults{LostResponseRate: 1})
		if resp := do(t, hc, http.MethodGet, r.URL()+"/acr/v1/app/_tags", tok, nil); resp.status != 200 {
			t.Fatalf("GETs are not affected: %d", resp.status)
		}
		if _, err := send(t, hc, http.MethodDelete, r.URL()+"/acr/v1/app/_tags/t2", tok, nil); err == nil {
			t.Fatal("lost response arrived")
		}
		if r.HasTag("app", "t2") {
			t.Error("delete was not performed")
		}
		d := r.Manifests("app")[0].Digest
		if _, err := send(t, hc, http.MethodDelete, r.URL()+"/v2/app/manifests/"+d, tok, nil); err == nil {
			t.Fatal("lost response arrived")
		}
		if r.HasManifest("app", d) {
			t.Error("manifest delete was not performed")
		}
		r.SetFaults(Faults{})
		resp := do(t, hc, http.MethodDelete, r.URL()+"/acr/v1/app/_tags/t2", tok, nil)
		if resp.status != http.StatusNotFound {
			t.Errorf("retry after lost response: %d, want 404", resp.status)
		}
		if got := len(r.Deletes()); got < 2 {
			t.Errorf("%d deletes recorded", got)
		}
	})

	t.Run("latency", func(t *testing.T) {
		r, hc, tok := faultyRegistry(t, Faults{Latency: 150 * time.Millisecond})
		begin := time.Now()
		if resp := do(t, hc, http.MethodGet, r.URL()+"/acr/v1/app/_tags", tok, nil); resp.status != 200 {
			t.Fatalf("%d", resp.status)
		}
		if d := time.Since(begin); d < 150*time.Millisecond {
			t.Errorf("answered in %v, want >= 150ms", d)
		}
		// oauth2 is exempt: with 30s of data-plane latency a login still
		// completes well within the client's 15s timeout.
		r.SetFaults(Faults{Latency: 30 * time.Second})
		login(t, hc, r, Identity{Name: "fast", Grants: all}, purgeScope("app"))
	})
}

func TestWaitIdle(t *testing.T) {
	t.Parallel()
	const latency = 150 * time.Millisecond
	r, hc, tok := faultyRegistry(t, Faults{Latency: latency})
	start := time.Now()
	go func() { _, _ = send(t, hc, http.MethodGet, r.URL()+"/acr/v1/app/_tags", tok, nil) }()
	for r.inflight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := r.WaitIdle(t.Context(), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < latency {
		t.Errorf("WaitIdle returned after %v, while a request was being served for %v", waited, latency)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	go func() { _, _ = send(t, hc, http.MethodGet, r.URL()+"/acr/v1/app/_tags", tok, nil) }()
	for r.inflight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := r.WaitIdle(ctx, time.Millisecond); err == nil {
		t.Error("WaitIdle returned nil with a request in progress")
	}
}
