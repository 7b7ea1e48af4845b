package fanout_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/acremu"
	"github.com/acrpurge/acrpurge/internal/acremu/emutest"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/checkpoint/checkpointtest"
	"github.com/acrpurge/acrpurge/internal/fanout"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// countingSender keeps only counts, like a queue that is drained elsewhere.
type countingSender struct{ calls, msgs, bytes atomic.Int64 }

func (c *countingSender) Send(ctx context.Context, msgs []queue.Outgoing) error {
	c.calls.Add(1)
	c.msgs.Add(int64(len(msgs)))
	for _, m := range msgs {
		c.bytes.Add(int64(len(m.Body)))
	}
	return ctx.Err()
}

// heapPeak samples the heap until stopped: the largest HeapAlloc (live
// objects and garbage not yet collected) and the largest live heap measured
// by a garbage collection.
type heapPeak struct {
	stop       chan struct{}
	done       sync.WaitGroup
	peak, live atomic.Uint64
}

// liveHeap is the heap marked live by the last garbage collection.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > h.peak.Load() {
				h.peak.Store(ms.HeapAlloc)
			}
			if l := liveHeap(); l > h.live.Load() {
				h.live.Store(l)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// Stop ends sampling and returns the peaks.
func (h *heapPeak) Stop() (alloc, live uint64) {
	close(h.stop)
	h.done.Wait()
	return h.peak.Load(), h.live.Load()
}

// BenchmarkFanOut100k fans out an emulated registry of 100,000 repositories
// (team-NNN/svc-NNNN) in batches of 10, listing the catalog through the real
// client and token broker, into the in-memory store and (when Azurite is
// running) a Table store. It reports the seconds one fan-out takes and its
// memory. The emulator's 100,000 repositories live in the same process, so
// the figures are relative to the live heap before the fan-out (after a
// forced GC): fanout-heap-MB is the largest HeapAlloc above it (live objects
// plus garbage not yet collected: an upper bound), fanout-live-MB the
// largest live heap a garbage collection measured above it (what the
// fan-out really holds). GOGC is lowered to 25 while measuring so that
// collections, and live measurements, happen during the fan-out; the time
// includes that extra GC work. peak-heap-MB is the whole process's largest
// HeapAlloc, emulator included. Goal: < 10 s, < 200 MB.
func BenchmarkFanOut100k(b *testing.B) {
	const repos = 100_000
	env := emutest.Start(b, emutest.Options{})
	for i := range repos {
		env.Registry.Put(fmt.Sprintf("team-%03d/svc-%04d", i/1000, i%1000), acremu.Artifact{Tags: []string{"v1"}, Seed: "bench"})
	}
	pol := mustPolicy(b, `{"rules":[{"filters":["team-.*:.*"],"ago":"30d","keep":3}]}`)

	run := func(b *testing.B, newStore func(b *testing.B) checkpoint.Store) {
		for i := 0; b.Loop(); i++ {
			store := newStore(b)
			sender := &countingSender{}
			s, err := fanout.New(fanout.Options{
				Policy: pol, BatchSize: 10, Store: store, Sender: sender,
				Catalog: env.Client.WithTokens(env.Broker.Source(acr.CatalogScope())),
			})
			if err != nil {
				b.Fatal(err)
			}
			gc := debug.SetGCPercent(25)
			runtime.GC()
			base := liveHeap()
			peak := watchHeap()
			start := time.Now()
			sum, err := s.Run(b.Context(), fanout.Firing{At: time.Date(2025, 1, 1, 12, 0, i, 0, time.UTC)})
			elapsed := time.Since(start)
			alloc, live := peak.Stop()
			debug.SetGCPercent(gc)
			if err != nil {
				b.Fatal(err)
			}
			if sum.Repositories != repos || sender.msgs.Load() != repos/10 {
				b.Fatalf("fanned out %d repositories in %d messages, want %d in %d", sum.Repositories, sender.msgs.Load(), repos, repos/10)
			}
			b.ReportMetric(elapsed.Seconds(), "s/fanout")
			b.ReportMetric(float64(alloc)/(1<<20), "peak-heap-MB")
			b.ReportMetric(float64(alloc-min(alloc, base))/(1<<20), "fanout-heap-MB")
			b.ReportMetric(float64(live-min(live, base))/(1<<20), "fanout-live-MB")
			b.ReportMetric(float64(sender.calls.Load()), "send-calls")
		}
	}
	b.Run("memory", func(b *testing.B) {
		run(b, func(*testing.B) checkpoint.Store { return checkpoint.NewMemory() })
	})
	b.Run("table", func(b *testing.B) {
		if os.Getenv(checkpointtest.EnvEndpoint) == "" {
			b.Skip(checkpointtest.SkipMessage)
		}
		run(b, func(b *testing.B) checkpoint.Store { return checkpointtest.NewTable(b) })
	})
}
