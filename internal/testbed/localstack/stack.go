package localstack

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/config"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
	"github.com/acrpurge/acrpurge/internal/testbed/hostdriver"
)

// UsageError is an error in what RunStack was asked to do (flags, settings,
// the policy), as opposed to a failure while running: `handler local` exits
// 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// RunStack starts the emulator with the demo registry, serves the app on a
// loopback port, delivers the triggers through the host stand-in, drains
// the queue after each, and reports. Everything it started is stopped
// before it returns. An error means the stack could not run (bad options,
// a listener, the checkpoint table); failed invocations are part of the
// Result, not errors.
func RunStack(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	if err := o.validate(); err != nil {
		return nil, &UsageError{Err: err}
	}
	start := time.Now()
	out := newPrinter(o.Progress)

	reg := acremu.New(acremu.Options{ABAC: true, Logger: o.Logger})
	if err := reg.Start(); err != nil {
		return nil, fmt.Errorf("start the registry emulator: %w", err)
	}
	defer reg.Close()
	cred := reg.AddIdentity(DemoIdentity())
	res := &Result{Emulator: reg, PolicyJSON: o.Policy, DryRun: o.DryRun, BatchSize: o.BatchSize}
	settings := map[string]string{
		config.LoginServer:      reg.URL(),
		config.Policy:           o.Policy,
		config.BatchSize:        strconv.Itoa(o.BatchSize),
		config.DeletesPerMinute: strconv.Itoa(o.DeletesPerMinute),
		config.MaxDeliveries:    strconv.Itoa(o.MaxDeliveries),
		config.DryRun:           strconv.FormatBool(o.DryRun),
	}
	if o.Concurrency > 0 {
		settings[config.Concurrency] = strconv.Itoa(o.Concurrency)
	}
	cfg, err := config.Load(func(k string) string { return settings[k] }, config.Requirement{})
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	// The clock starts at the latest occurrence of the schedule, so that
	// the timer fires as it does every night (a scheduled run, "s-…").
	if occ := cfg.Schedule.Prev(reg.Now()); !occ.IsZero() {
		reg.SetNow(occ.Add(timerLateness))
	}
	res.Demo = Seed(reg, reg.Now(), o.Repositories)
	store, tbl, storeName, err := openStore(ctx, o)
	if err != nil {
		return nil, err
	}
	res.Store = storeName
	// With Table checkpoints, the delete budget is the registry-wide one the
	// deployed app uses, shared through the same table; in memory, it is
	// this process's own.
	var deletes acr.Gate
	if tbl != nil {
		shared, err := app.NewSharedBudget(cfg, *tbl, o.Logger)
		if err != nil {
			return nil, err
		}
		deletes = shared
	}
	dir := o.PolicyDir
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("working directory (for an @file policy): %w", err)
		}
	}
	pol, err := policy.Load(cfg.PolicySetting, dir)
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("%s: %w", config.Policy, err)}
	}
	res.Policy = pol

	q := fakebus.New(fakebus.Options{Now: reg.Now, MaxDeliveries: o.MaxDeliveries})
	a, err := app.New(cfg, pol, app.Deps{
		Credential: cred, Sender: q, Store: store, Now: reg.Now, Logger: o.Logger, Deletes: deletes,
		// Quick retries: the emulator answers at once, and the demo should
		// not sit in backoffs when faults are injected.
		Retry: acr.RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond},
	})
	if err != nil {
		return nil, err
	}
	base, stop, err := serve(ctx, a.HTTPHandler())
	if err != nil {
		return nil, err
	}
	defer stop()
	transport := &http.Transport{MaxIdleConnsPerHost: o.MaxConcurrentCalls + 1}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	if err := funchost.WaitReady(ctx, client, base); err != nil {
		return nil, fmt.Errorf("the handler did not come up: %w", err)
	}
	earlier, err := runIDs(ctx, store)
	if err != nil {
		return nil, err
	}
	// With Table checkpoints a run can outlive the process that drove it:
	// a killed `handler local` leaves batches queued in an in-process
	// queue that died with it. Send them again, and report those runs.
	if o.CheckpointStorage != "" {
		resumed, err := resumeUnfinished(ctx, store, q, out)
		if err != nil {
			return nil, err
		}
		for _, id := range resumed {
			delete(earlier, id)
		}
		res.Resumed = resumed
	}
	res.Before = inventory(reg)
	if o.ErrorRate > 0 {
		reg.SetFaults(acremu.Faults{ErrorRate: o.ErrorRate, Seed: 1})
	}
	h := &hostdriver.Driver{
		Base: func() string { return base }, Client: client, Queue: q, Now: reg.Now, MaxCalls: o.MaxConcurrentCalls,
		Backoff: o.RedeliveryBackoff, OnInvocation: out.invocation, DeadLetters: true,
	}
	res.Timings.Setup = time.Since(start)
	writeIntro(out, res, o, base)

	triggered := time.Now()
	for _, t := range o.Triggers {
		if err := deliverTrigger(ctx, t, o, cfg.Schedule.String(), reg, q, h, out); err != nil {
			return nil, err
		}
		if err := h.Drain(ctx); err != nil {
			return nil, err
		}
	}
	res.Timings.Triggers = time.Since(triggered)

	reported := time.Now()
	reg.SetFaults(acremu.Faults{})
	res.After = inventory(reg)
	res.Invocations = h.Invocations()
	res.DeadLetters = q.DeadLetters()
	res.Duplicates = q.DuplicatesDropped()
	if res.Runs, err = newReports(ctx, store, earlier); err != nil {
		return nil, err
	}
	if res.Rejections, err = rejections(ctx, store, res.Invocations); err != nil {
		return nil, err
	}
	if o.HTMLDir != "" {
		if res.Pages, err = writePages(ctx, h, o.HTMLDir, res.Runs); err != nil {
			return nil, err
		}
	}
	res.Timings.Report = time.Since(reported)
	res.Timings.Total = time.Since(start)
	if o.Browse != nil {
		if err := o.Browse(ctx, &HostFront{Base: base, Client: client}, res); err != nil {
			return nil, fmt.Errorf("browse: %w", err)
		}
	}
	return res, nil
}

// openStore returns the checkpoint store: memory, or a Table Storage table
// when a connection string is given.
func openStore(ctx context.Context, o Options) (checkpoint.Store, *checkpoint.TableOptions, string, error) {
	if o.CheckpointStorage == "" {
		return checkpoint.NewMemory(), nil, "memory", nil
	}
	name := o.CheckpointTable
	if name == "" {
		name = "acrpurgelocal" + time.Now().UTC().Format("20060102150405")
	}
	tbl := checkpoint.TableOptions{ConnectionString: o.CheckpointStorage, Table: name, Logger: o.Logger}
	t, err := checkpoint.NewTable(ctx, tbl)
	if err != nil {
		return nil, nil, "", fmt.Errorf("checkpoint table %s (%s): %w", name, config.CheckpointConnString, err)
	}
	return t, &tbl, "table " + t.Name(), nil
}

// serve serves h on a free loopback port, as `handler serve` does on
// FUNCTIONS_CUSTOMHANDLER_PORT. stop shuts the server down.
func serve(ctx context.Context, h http.Handler) (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the handler: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // ends with ErrServerClosed at stop
	}()
	stop = func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), app.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// deliverTrigger starts one trigger: fires the timer, or puts a push event
// or a portal message into the queue.
func deliverTrigger(ctx context.Context, t Trigger, o Options, sched string, reg *acremu.Registry, q *fakebus.Queue, h *hostdriver.Driver, out *printer) error {
	switch t.Kind {
	case TriggerTimer:
		at := reg.Now()
		out.section("Timer fired at %s (PURGE_SCHEDULE %q): the Scheduler fans out the repositories the policy covers, %d per message",
			at.UTC().Format("15:04:05Z"), sched, o.BatchSize)
		h.FireTimer(ctx, at, false)
	case TriggerPush:
		repo, tag, _ := splitRef(t.Ref) // validated
		at := reg.Now()
		const size = 87 << 20
		digest := reg.Put(repo, acremu.Artifact{Tags: []string{tag}, Created: at, Size: size, Seed: "push " + t.Ref + " " + at.String()})
		if digest == "" {
			return fmt.Errorf("push %q: the registry stored nothing", t.Ref)
		}
		schema := "Event Grid schema"
		if o.CloudEvents {
			schema = "CloudEvents 1.0"
		}
		id := funchost.NewGUID()
		out.section("Pushed %s (%s): the registry's Event Grid subscription routes its ImagePushed event (%s) to the queue",
			t.Ref, shortDigest(digest), schema)
		q.Put(id, pushEvent(o.CloudEvents, id, reg.Host(), repo, tag, digest, acr.MediaTypeOCIManifest, size, at))
	case TriggerSend:
		id := funchost.NewGUID()
		out.section("Portal: an operator sends message %s to the queue: %s", id, oneLine(t.Body, 120))
		q.Put(id, []byte(t.Body))
	default:
		return fmt.Errorf("unknown trigger %q", t.Kind)
	}
	return nil
}

// resumeUnfinished puts a message into q for every batch of a recorded run
// that is not finished (queued, running or continued): the queue that held
// them was in memory. A continued batch gets its latest continuation
// number, so the Worker does not take the message for a superseded one; the
// repositories resume from their checkpointed cursors. It returns the runs
// resumed.
func resumeUnfinished(ctx context.Context, store checkpoint.Store, q *fakebus.Queue, out *printer) ([]string, error) {
	recs, err := store.LatestRuns(ctx, maxRuns)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var resumed []string
	for _, run := range recs {
		batches, err := store.ListBatches(ctx, run.ID)
		if err != nil {
			return nil, fmt.Errorf("run %s: list batches: %w", run.ID, err)
		}
		var msgs []queue.Outgoing
		for _, b := range batches {
			switch b.Status {
			case checkpoint.StatusQueued, checkpoint.StatusRunning, checkpoint.StatusContinued, "":
			default:
				continue
			}
			m := queue.BatchMessage(run, b)
			if b.Continuations > 0 {
				m.Resume = &queue.Resume{N: b.Continuations}
			}
			o, err := queue.NewOutgoing(m)
			if err != nil {
				return nil, fmt.Errorf("run %s batch %d: %w", run.ID, b.N, err)
			}
			msgs = append(msgs, o)
		}
		if len(msgs) == 0 {
			continue
		}
		out.section("Resuming run %s: an earlier `handler local` left %d of its %d batches unfinished (its in-process queue died with it); sending them again",
			run.ID, len(msgs), len(batches))
		for _, o := range msgs {
			q.Put(o.ID, o.Body)
		}
		if !run.Enqueued {
			if err := store.MarkEnqueued(ctx, run.ID); err != nil {
				return nil, fmt.Errorf("run %s: mark enqueued: %w", run.ID, err)
			}
		}
		resumed = append(resumed, run.ID)
	}
	return resumed, nil
}

// runIDs returns the IDs of the runs already in the store.
func runIDs(ctx context.Context, store checkpoint.Store) (map[string]bool, error) {
	runs, err := store.LatestRuns(ctx, maxRuns)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	ids := make(map[string]bool, len(runs))
	for _, r := range runs {
		ids[r.ID] = true
	}
	return ids, nil
}

// maxRuns bounds the runs one local session reports on, and the rejected
// messages it looks at.
const maxRuns = 1000

// rejections returns the rejections of the messages delivered in this
// session, oldest first.
func rejections(ctx context.Context, store checkpoint.Store, invs []Invocation) ([]checkpoint.Rejection, error) {
	delivered := map[string]bool{}
	for _, v := range invs {
		if v.MessageID != "" {
			delivered[v.MessageID] = true
		}
	}
	if len(delivered) == 0 {
		return nil, nil
	}
	all, err := store.ListRejections(ctx, maxRuns)
	if err != nil {
		return nil, fmt.Errorf("list rejected messages: %w", err)
	}
	var out []checkpoint.Rejection
	for _, r := range all {
		if delivered[r.MessageID] {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b checkpoint.Rejection) int { return a.At.Compare(b.At) })
	return out, nil
}

// newReports builds the reports of the runs not in earlier, oldest first.
func newReports(ctx context.Context, store checkpoint.Store, earlier map[string]bool) ([]*runs.Report, error) {
	recs, err := store.LatestRuns(ctx, maxRuns)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	recs = slices.DeleteFunc(recs, func(r checkpoint.Run) bool { return earlier[r.ID] })
	slices.SortFunc(recs, func(a, b checkpoint.Run) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	reps := make([]*runs.Report, 0, len(recs))
	for _, r := range recs {
		rep, err := runs.Build(ctx, store, r.ID)
		if err != nil {
			return nil, fmt.Errorf("report of run %s: %w", r.ID, err)
		}
		reps = append(reps, rep)
	}
	return reps, nil
}

// inventory counts the registry's content.
func inventory(reg *acremu.Registry) Inventory {
	var inv Inventory
	for _, name := range reg.Repositories() {
		inv.Repositories++
		inv.Tags += len(reg.Tags(name))
		for _, m := range reg.Manifests(name) {
			inv.Manifests++
			inv.Bytes += m.ImageSize
		}
	}
	return inv
}
