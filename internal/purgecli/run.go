package purgecli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"golang.org/x/sync/errgroup"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/budget"
	"github.com/acrpurge/acrpurge/internal/purge"
)

// Grace periods: how long deletes already in flight may take to finish
// after an interrupt, and how long after --timeout the run is cut off hard
// (listings that never reach a delete decision do not see the soft
// deadline).
const (
	defaultInterruptGrace = 10 * time.Second
	defaultTimeoutGrace   = 30 * time.Second
)

// Run runs `handler purge` with args (after the subcommand) and returns the
// exit code: 0 every repository done, 1 runtime failure, 2 usage or
// configuration error, 3 some repositories forbidden, failed or partial,
// 130 interrupted (ctx cancelled, e.g. by Ctrl-C through
// signal.NotifyContext). The report goes to stdout; progress, logs and
// errors go to stderr. getenv supplies the defaults of --registry
// (ACR_LOGIN_SERVER) and --policy (PURGE_POLICY).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return run(ctx, args, stdout, stderr, getenv, deps{})
}

// deps are the parts tests replace. Zero fields take production defaults.
type deps struct {
	credential     func(tenant string) (azcore.TokenCredential, error)
	httpClient     *http.Client
	now            func() time.Time
	retry          acr.RetryPolicy
	getwd          func() (string, error)
	progressEvery  time.Duration
	interruptGrace time.Duration
	timeoutGrace   time.Duration
}

func (d deps) withDefaults() deps {
	if d.credential == nil {
		d.credential = defaultCredential
	}
	if d.httpClient == nil {
		d.httpClient = acr.NewHTTPClient()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.getwd == nil {
		d.getwd = os.Getwd
	}
	if d.progressEvery <= 0 {
		d.progressEvery = defaultProgressEvery
	}
	if d.interruptGrace <= 0 {
		d.interruptGrace = defaultInterruptGrace
	}
	if d.timeoutGrace <= 0 {
		d.timeoutGrace = defaultTimeoutGrace
	}
	return d
}

// defaultCredential is DefaultAzureCredential; it honours AZURE_CLIENT_ID,
// AZURE_TENANT_ID and the other azidentity environment variables.
func defaultCredential(tenant string) (azcore.TokenCredential, error) {
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{TenantID: tenant})
	if err != nil {
		return nil, fmt.Errorf("DefaultAzureCredential: %w", err)
	}
	return cred, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, d deps) int {
	d = d.withDefaults()
	errOut := &syncWriter{w: stderr}
	wd, err := d.getwd()
	if err != nil {
		fmt.Fprintf(errOut, "handler purge: current directory: %v\n", err)
		return exitRuntime
	}
	o, err := parseOptions(args, getenv, wd, errOut)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		var ue *usageError
		if !errors.As(err, &ue) || !ue.printed {
			fmt.Fprintf(errOut, "handler purge: %v\nRun 'handler purge -h' for usage.\n", err)
		}
		return exitUsage
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))
	cred, err := d.credential(o.tenant)
	if err != nil {
		fmt.Fprintf(errOut, "handler purge: authentication: %v\n", err)
		return exitRuntime
	}
	r := &runner{o: o, d: d, cred: cred, log: log, stdout: stdout, stderr: errOut}
	return r.run(ctx)
}

// runner is one run of the command.
type runner struct {
	o      options
	d      deps
	cred   azcore.TokenCredential
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
}

func (r *runner) run(ctx context.Context) int {
	start := r.d.now()
	deadline := start.Add(r.o.timeout)
	wctx, cancel := context.WithTimeout(ctx, r.o.timeout+r.d.timeoutGrace)
	defer cancel()

	// The delete budget of this process alone: the same algorithm as the
	// app's registry-wide one, on an in-memory store.
	deletes, err := budget.NewLocal(budget.Options{PerMinute: r.o.deletesPerMinute, Scope: r.o.registry.Service, Logger: r.log})
	if err != nil {
		return r.fatal(ctx, fmt.Errorf("delete budget: %w", err))
	}
	broker, client, err := acr.Connect(acr.ConnectOptions{
		Endpoint: r.o.registry, Credential: r.cred, Tenant: r.o.tenant, HTTPClient: r.d.httpClient,
		Retry: r.d.retry, Limiter: acr.NewLimiter(acr.LimiterOptions{Deletes: deletes}), Now: r.d.now, Logger: r.log,
	})
	if err != nil {
		return r.fatal(ctx, err)
	}
	r.log.Info("purge starting", "registry", r.o.registry.String(), "dryRun", r.o.dryRun,
		"policy", r.o.policy.Hash(), "rules", r.o.policy.Describe())

	repos, err := r.repositories(wctx, broker, client)
	if err != nil {
		return r.fatal(ctx, err)
	}
	var batches []purge.Batch
	for chunk := range slices.Chunk(repos, r.o.batchSize) {
		src := broker.Source(acr.PurgeScopes(chunk)...)
		batches = append(batches, purge.Batch{
			Repositories: chunk, Policy: r.o.policy, DryRun: r.o.dryRun, Deadline: deadline,
			Tokens: src, Registry: graceful{Client: client.WithTokens(src), grace: r.d.interruptGrace},
		})
	}
	// Fail fast, with exit 1, when the registry cannot be reached or the
	// credential is refused; the token is the first batch's own.
	if len(batches) > 0 {
		if _, err := batches[0].Tokens.Token(wctx); err != nil {
			return r.fatal(ctx, fmt.Errorf("get an access token from %s: %w", r.o.registry, err))
		}
	}

	col := newCollector(repos, r.o.verbose)
	ex := purge.New(nil, purge.Options{
		Concurrency: r.o.concurrency, Now: r.d.now, OnDecision: col.onDecision, Logger: r.log,
	})
	prog := startProgress(wctx, r.stderr, col, len(repos), r.o.dryRun, r.d.progressEvery, r.d.now)
	// Every batch runs at once; the shared slots bound the repositories
	// purged at a time across all of them, the executor the deletes.
	opts := purge.BatchOptions{
		Executor: ex, Slots: make(chan struct{}, min(r.o.repoParallel, r.o.concurrency)),
		Done: func(o purge.RepoOutcome) { r.record(ctx, wctx, col, o) },
	}
	var g errgroup.Group
	for _, b := range batches {
		g.Go(func() error {
			purge.RunBatch(wctx, b, opts)
			return nil
		})
	}
	_ = g.Wait() // outcomes go through record
	prog.stop()

	rep := col.report()
	interrupted := ctx.Err() != nil
	timedOut := !interrupted && (wctx.Err() != nil || !r.d.now().Before(deadline))
	for i := range rep.Repositories {
		if rr := &rep.Repositories[i]; rr.Status == statusNotStarted {
			switch {
			case interrupted:
				rr.Reason = "interrupted before the repository was started"
			case timedOut:
				rr.Reason = "--timeout reached before the repository was started"
			}
		}
	}
	rep.Registry, rep.DryRun, rep.Interrupted = r.o.registry.Service, r.o.dryRun, interrupted
	rep.PolicyHash = r.o.policy.Hash()
	rep.StartedAt, rep.FinishedAt = start.UTC(), r.d.now().UTC()
	rep.DurationSeconds = rep.FinishedAt.Sub(rep.StartedAt).Seconds()
	t := rep.Totals
	switch {
	case interrupted:
		rep.ExitCode = exitInterrupted
	case t.Partial+t.Forbidden+t.Failed+t.NotStarted+t.Interrupted > 0:
		rep.ExitCode = exitIncomplete
	default:
		rep.ExitCode = exitOK
	}
	return r.write(rep)
}

// write prints the report and the closing notes on stderr.
func (r *runner) write(rep *report) int {
	var err error
	if r.o.json {
		err = writeJSON(r.stdout, rep)
	} else {
		err = writeTable(r.stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(r.stderr, "handler purge: %v\n", err)
		return exitRuntime
	}
	if rep.DryRun && r.o.json {
		fmt.Fprintln(r.stderr, dryRunFooter)
	}
	switch {
	case rep.Interrupted && rep.DryRun:
		fmt.Fprintln(r.stderr, "handler purge: interrupted (dry run: nothing was deleted)")
	case rep.Interrupted:
		fmt.Fprintf(r.stderr, "handler purge: interrupted: no new deletes were started; %d tags and %d manifests were deleted\n",
			rep.Totals.TagsDeleted, rep.Totals.ManifestsDeleted)
	}
	return rep.ExitCode
}

// fatal reports an error that stops the run before any repository: exit 1,
// or 130 when it came from an interrupt.
func (r *runner) fatal(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(r.stderr, "handler purge: interrupted before any repository was purged")
		return exitInterrupted
	}
	fmt.Fprintf(r.stderr, "handler purge: %v\n", err)
	return exitRuntime
}

// repositories returns the repositories to purge, sorted: the named ones,
// or the catalog filtered by the policy.
func (r *runner) repositories(ctx context.Context, broker *acr.Broker, client *acr.Client) ([]string, error) {
	if len(r.o.repositories) > 0 {
		repos := slices.Clone(r.o.repositories)
		slices.Sort(repos)
		return repos, nil
	}
	cat := client.WithTokens(broker.Source(acr.CatalogScope()))
	var all []string
	err := cat.Catalog(ctx, func(page []string) error {
		all = append(all, page...)
		return nil
	})
	switch {
	case acr.IsNotPermitted(err):
		return nil, fmt.Errorf("the registry refused to list its catalog: the identity needs the "+
			"Container Registry Catalog Lister role, or name repositories with --repository: %w", err)
	case err != nil:
		return nil, fmt.Errorf("list the catalog of %s: %w", r.o.registry, err)
	}
	repos, err := r.o.policy.Filter(all)
	if err != nil {
		return nil, fmt.Errorf("match the catalog against the policy: %w", err)
	}
	r.log.Info("catalog listed", "repositories", len(all), "matching", len(repos))
	if len(repos) == 0 {
		fmt.Fprintf(r.stderr, "handler purge: none of the %d repositories in the catalog is covered by the policy\n", len(all))
	}
	return repos, nil
}

// record reports one repository's outcome. ctx is the caller's (cancelled
// by an interrupt), wctx the run's (also ended by the hard timeout).
func (r *runner) record(ctx, wctx context.Context, col *collector, o purge.RepoOutcome) {
	res := purge.Result{Repository: o.Repository}
	if o.Result != nil {
		res = *o.Result
	}
	switch {
	case o.Status == purge.StatusNotStarted:
		return // stays not started; the report says why
	case o.Result == nil && o.Retryable && wctx.Err() != nil:
		return // the token was cut off by the interrupt or timeout: not started
	case o.Result == nil:
		reason := o.Reason
		if o.Err != nil && o.Status == purge.StatusFailed {
			reason += ": " + o.Err.Error()
		}
		col.finish(res, string(o.Status), reason)
		return
	}
	timedOut := errors.Is(wctx.Err(), context.DeadlineExceeded)
	status, reason := statusOf(res, ctx.Err() != nil, timedOut)
	col.finish(res, status, reason)
}
