package benchmarks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/scheduler"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// FanOutOptions configure FanOut.
type FanOutOptions struct {
	// Repositories in the registry (team-NNN/svc-NNNN), all covered by the
	// policy; default 100,000.
	Repositories int
	// BatchSize is ABAC_BATCH_SIZE (default config.DefaultBatchSize).
	BatchSize int
	// TableConnString, when set, is a Table Storage connection string
	// (Azurite's): the fan-out also runs with a Table store, in a fresh
	// table deleted afterwards. The Memory store always runs.
	TableConnString string
}

// DefaultFanOut is the fan-out scenario of issue 4: 100,000 repositories in
// batches of 10.
func DefaultFanOut() FanOutOptions {
	return FanOutOptions{Repositories: 100_000, BatchSize: config.DefaultBatchSize}
}

// FanOutRun is one fan-out into one checkpoint store.
type FanOutRun struct {
	Store        string        `json:"store"`
	Repositories int           `json:"repositories"`
	Messages     int64         `json:"messages"`
	SendCalls    int64         `json:"sendCalls"`
	Elapsed      time.Duration `json:"elapsedNs"`
	// Heap is the fan-out's own heap: the process's peaks above its heap
	// just before, after a garbage collection (the emulator and its
	// repositories live in the same process). Heap.Alloc is an upper bound
	// (garbage included), Heap.Live what a garbage collection found live.
	Heap HeapPeaks `json:"heap"`
	// ProcessAlloc is the process's peak HeapAlloc, emulator included.
	ProcessAlloc uint64 `json:"processAllocBytes"`
}

// FanOutFigures are the results of FanOut.
type FanOutFigures struct {
	Memory FanOutRun `json:"memory"`
	// Table is nil when no connection string was given.
	Table *FanOutRun `json:"table,omitempty"`
}

// fanOutPolicy covers every team-* repository.
const fanOutPolicy = `{"rules":[{"filters":["team-.*:.*"],"ago":"30d","keep":3}]}`

// countingSender keeps only counts, like a queue that is drained elsewhere.
type countingSender struct{ calls, msgs atomic.Int64 }

func (c *countingSender) Send(ctx context.Context, msgs []queue.Outgoing) error {
	c.calls.Add(1)
	c.msgs.Add(int64(len(msgs)))
	return ctx.Err()
}

// FanOut seeds an emulated registry of o.Repositories repositories and
// fans it out as the Scheduler does (catalog listed through the real client
// and token broker, run and batch rows written, one message per batch), into
// the Memory store and, with o.TableConnString, a Table store. GOGC is
// lowered to 25 while measuring so that collections, and so live-heap
// measurements, happen during the fan-out; the time includes that GC work.
func FanOut(ctx context.Context, o FanOutOptions) (f FanOutFigures, err error) {
	d := DefaultFanOut()
	if o.Repositories < 1 {
		o.Repositories = d.Repositories
	}
	if o.BatchSize < 1 {
		o.BatchSize = d.BatchSize
	}
	pol, err := policy.Parse([]byte(fanOutPolicy))
	if err != nil {
		return f, fmt.Errorf("fan-out: policy: %w", err)
	}
	e, err := startEnv(envOptions{})
	if err != nil {
		return f, err
	}
	defer e.Close()
	for i := range o.Repositories {
		e.reg.Put(fmt.Sprintf("team-%03d/svc-%04d", i/1000, i%1000), acremu.Artifact{Tags: []string{"v1"}, Seed: "bench"})
	}
	catalog := e.client.WithTokens(e.broker.Source(acr.CatalogScope()))

	f.Memory, err = fanOutOnce(ctx, o, pol, catalog, checkpoint.NewMemory(), "memory", 0)
	if err != nil {
		return f, err
	}
	if o.TableConnString == "" {
		return f, nil
	}
	name, err := tableName()
	if err != nil {
		return f, err
	}
	table, err := checkpoint.NewTable(ctx, checkpoint.TableOptions{ConnectionString: o.TableConnString, Table: name})
	if err != nil {
		return f, fmt.Errorf("fan-out: checkpoint table %s: %w", name, err)
	}
	defer func() {
		if derr := deleteTable(context.WithoutCancel(ctx), o.TableConnString, name); derr != nil && err == nil {
			err = derr
		}
	}()
	run, err := fanOutOnce(ctx, o, pol, catalog, table, "table (Azurite)", 1)
	if err != nil {
		return f, err
	}
	f.Table = &run
	return f, nil
}

// fanOutOnce runs one fan-out into store and measures it. n makes the
// firing, and so the run, distinct.
func fanOutOnce(ctx context.Context, o FanOutOptions, pol *policy.Policy, catalog scheduler.Catalog, store checkpoint.Store, storeName string, n int) (FanOutRun, error) {
	r := FanOutRun{Store: storeName}
	sender := &countingSender{}
	s, err := scheduler.New(scheduler.Options{Policy: pol, BatchSize: o.BatchSize, Store: store, Sender: sender, Catalog: catalog})
	if err != nil {
		return r, fmt.Errorf("fan-out: %w", err)
	}
	gc := debug.SetGCPercent(25)
	defer debug.SetGCPercent(gc)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, baseInuse := liveHeap(), ms.HeapInuse
	heap := watchHeap(5 * time.Millisecond)
	start := time.Now()
	sum, err := s.Run(ctx, scheduler.Firing{At: time.Date(2025, 1, 1, 12, 0, n, 0, time.UTC)})
	r.Elapsed = time.Since(start)
	peaks := heap.Stop()
	if err != nil {
		return r, fmt.Errorf("fan-out (%s): %w", storeName, err)
	}
	wantMsgs := int64((o.Repositories + o.BatchSize - 1) / o.BatchSize)
	if sum.Repositories != o.Repositories || sender.msgs.Load() != wantMsgs {
		return r, fmt.Errorf("fan-out (%s): %d repositories in %d messages, want %d in %d",
			storeName, sum.Repositories, sender.msgs.Load(), o.Repositories, wantMsgs)
	}
	r.Repositories, r.Messages, r.SendCalls = sum.Repositories, sender.msgs.Load(), sender.calls.Load()
	r.ProcessAlloc = peaks.Alloc
	r.Heap = HeapPeaks{Inuse: peaks.Inuse - min(peaks.Inuse, baseInuse), Alloc: peaks.Alloc - min(peaks.Alloc, base), Live: peaks.Live - min(peaks.Live, base)}
	return r, nil
}

// tableName returns a fresh, unique table name.
func tableName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random table name: %w", err)
	}
	return "acrpbench" + hex.EncodeToString(b[:]), nil
}

// deleteTable deletes a table made for a benchmark (a 404 is fine).
func deleteTable(ctx context.Context, conn, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc, err := aztables.NewServiceClientFromConnectionString(conn, nil)
	if err != nil {
		return fmt.Errorf("delete table %s: %w", name, err)
	}
	_, err = svc.DeleteTable(ctx, name, nil)
	var re *azcore.ResponseError
	if err != nil && !(errors.As(err, &re) && re.StatusCode == 404) {
		return fmt.Errorf("delete table %s: %w", name, err)
	}
	return nil
}
