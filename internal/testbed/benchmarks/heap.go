package benchmarks

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// HeapPeaks are the largest heap figures seen while a scenario ran.
type HeapPeaks struct {
	// Inuse is runtime.MemStats.HeapInuse: bytes in in-use heap spans
	// (live objects, garbage not yet swept and span fragmentation).
	Inuse uint64 `json:"inuseBytes"`
	// Alloc is runtime.MemStats.HeapAlloc: live objects plus garbage not
	// yet collected; an upper bound of what the code holds.
	Alloc uint64 `json:"allocBytes"`
	// Live is the heap the last garbage collection marked live
	// (runtime/metrics /gc/heap/live:bytes): what the code really holds,
	// as of that collection.
	Live uint64 `json:"liveBytes"`
}

// heapWatch samples the heap every interval until Stop, and whenever
// Sample is called.
type heapWatch struct {
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	peaks HeapPeaks
}

// liveHeap is the heap marked live by the last garbage collection.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// watchHeap starts sampling every interval (ReadMemStats stops the world
// for a few microseconds per sample).
func watchHeap(interval time.Duration) *heapWatch {
	h := &heapWatch{stop: make(chan struct{})}
	h.Sample()
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.Sample()
			}
		}
	}()
	return h
}

// Sample records the current heap figures.
func (h *heapWatch) Sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := liveHeap()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peaks.Inuse = max(h.peaks.Inuse, ms.HeapInuse)
	h.peaks.Alloc = max(h.peaks.Alloc, ms.HeapAlloc)
	h.peaks.Live = max(h.peaks.Live, live)
}

// Stop takes a last sample, ends sampling and returns the peaks.
func (h *heapWatch) Stop() HeapPeaks {
	h.Sample()
	close(h.stop)
	h.done.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peaks
}

// mb is bytes in MiB.
func mb(b uint64) float64 { return float64(b) / (1 << 20) }
