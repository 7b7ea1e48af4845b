package purgecli

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/purge"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// Exit codes of `handler purge`.
const (
	exitOK          = 0   // every repository done (or skipped: not in policy, gone)
	exitRuntime     = 1   // registry unreachable, authentication failed, catalog refused
	exitUsage       = 2   // bad flags, bad policy, bad registry
	exitIncomplete  = 3   // finished, but some repositories were forbidden, failed or partial
	exitInterrupted = 130 // interrupted (Ctrl-C): stopped starting deletes, reported what was done
)

// Setting names read as flag defaults (the same names the app uses).
const (
	envLoginServer     = "ACR_LOGIN_SERVER"
	envPolicy          = "PURGE_POLICY"
	envRepoParallelism = "PURGE_REPOSITORY_PARALLELISM"
)

// Flag defaults and bounds.
const (
	defaultConcurrency      = 8
	defaultDeletesPerMinute = 250
	defaultBatchSize        = 10
	defaultTimeout          = time.Hour
	maxConcurrency          = 64
	maxDeletesPerMinute     = 1_000_000
	maxBatchSize            = 50
	maxRepoParallelism      = 64
)

// options is the validated command line.
type options struct {
	registry         acr.Endpoint
	policy           *policy.Policy
	repositories     []string // sorted, unique; empty: the catalog
	dryRun           bool
	json             bool
	concurrency      int
	deletesPerMinute int
	batchSize        int
	repoParallel     int
	timeout          time.Duration
	verbose          bool
	tenant           string
}

// usageError is a bad command line or configuration: exit 2.
type usageError struct {
	msg     string
	printed bool // the flag package has already printed it with the usage
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// repoList is a repeatable --repository flag; commas also separate names.
type repoList []string

func (l *repoList) String() string { return strings.Join(*l, ",") }

func (l *repoList) Set(v string) error {
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			*l = append(*l, name)
		}
	}
	return nil
}

const usageText = `Usage: handler purge [flags]

Purge container images from an Azure Container Registry by policy, once, from
this machine. It signs in with DefaultAzureCredential (environment variables,
workload identity, managed identity, Azure CLI, ...; AZURE_CLIENT_ID selects a
user-assigned identity). By default it is a DRY RUN that deletes nothing and
reports what would be deleted; --dry-run=false deletes.

Repositories are purged in batches of --batch-size with one access token per
batch, scoped to exactly those repositories (ABAC registries ignore wildcard
scopes). Without --repository the catalog is listed (Catalog Lister role
needed) and filtered by the policy.

Flags:
`

const usageTail = `
Output: stdout gets a table (or with --output json one JSON document) of
every item deleted or that would be deleted, with the reason and the rule, a
summary of what was kept and why per repository (every kept item with
--verbose), and per-repository and total counts. Progress and warnings go to
stderr.

Exit codes:
  0    every repository done (repositories not in the policy or gone are skipped)
  1    runtime failure: registry unreachable, authentication failed, catalog refused
  2    usage or configuration error (flags, policy, registry)
  3    finished, but some repositories were forbidden, failed or only partly done
  130  interrupted: no new deletes were started; what was done is reported

Examples:
  # What would the policy delete? (dry run, the default)
  handler purge --registry contoso.azurecr.io --policy @policy.json

  # Two repositories only, for real, as JSON
  handler purge --registry contoso.azurecr.io --policy @policy.json \
      --repository team-a/api --repository team-a/web --dry-run=false --output json

  # An inline policy: ci- tags older than 30 days, keep the 5 newest
  handler purge --registry contoso.azurecr.io \
      --policy '{"rules":[{"filters":["team-a/.*:^ci-"],"ago":"30d","keep":5}]}'
`

// parseOptions parses args (after the subcommand). It returns flag.ErrHelp
// when help was asked for, a *usageError for anything wrong; wd is where
// --policy @file is looked for.
func parseOptions(args []string, getenv func(string) string, wd string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("handler purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		registry = fs.String("registry", getenv(envLoginServer),
			"registry login server, e.g. contoso.azurecr.io (default $"+envLoginServer+"); http://127.0.0.1:PORT only for loopback")
		pol = fs.String("policy", getenv(envPolicy),
			"policy JSON inline, or @file relative to the current directory (default $"+envPolicy+")")
		repos   repoList
		dryRun  = fs.Bool("dry-run", true, "report only, delete nothing; --dry-run=false deletes")
		output  = fs.String("output", "table", "output format: table or json")
		conc    = fs.Int("concurrency", defaultConcurrency, fmt.Sprintf("deletes in flight (1-%d)", maxConcurrency))
		dpm     = fs.Int("deletes-per-minute", defaultDeletesPerMinute, fmt.Sprintf("delete budget per minute (1-%d); ACR limits write operations per registry, by SKU (documented minimum per minute: Basic 100, Standard 500, Premium 2,000), for every client together: leave room for pushes", maxDeletesPerMinute))
		batch   = fs.Int("batch-size", defaultBatchSize, fmt.Sprintf("repositories per access token (1-%d)", maxBatchSize))
		repoPar = fs.String("repository-parallelism", cmp.Or(getenv(envRepoParallelism), strconv.Itoa(purge.DefaultRepoParallelism)),
			fmt.Sprintf("repositories purged at once (1-%d; default $%s, else %d); deletes in flight stay bounded by --concurrency",
				maxRepoParallelism, envRepoParallelism, purge.DefaultRepoParallelism))
		timeout  = fs.Duration("timeout", defaultTimeout, "overall time limit; then no new delete starts and the run ends partial")
		verbose  = fs.Bool("verbose", false, "list kept items too, and log at info level")
		tenant   = fs.String("tenant", "", "Microsoft Entra tenant ID (optional)")
		errUsage error
	)
	fs.Var(&repos, "repository", "repository to purge; repeat (or separate with commas) for several; default: the catalog filtered by the policy")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), usageTail)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, err
		}
		// The flag package has printed the problem and the usage.
		return options{}, &usageError{msg: err.Error(), printed: true}
	}
	if fs.NArg() > 0 {
		hint := ""
		if a := fs.Arg(0); a == "false" || a == "true" {
			hint = fmt.Sprintf(" (boolean flags take their value with '=': --dry-run=%s)", a)
		}
		errUsage = usagef("unexpected argument %q%s", fs.Arg(0), hint)
	}

	o := options{
		dryRun: *dryRun, concurrency: *conc, deletesPerMinute: *dpm, batchSize: *batch,
		timeout: *timeout, verbose: *verbose, tenant: strings.TrimSpace(*tenant),
	}
	var errs []error
	if errUsage != nil {
		errs = append(errs, errUsage)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(*repoPar)); err != nil || n < 1 || n > maxRepoParallelism {
		errs = append(errs, usagef("--repository-parallelism (or %s) must be a whole number from 1 to %d, got %q",
			envRepoParallelism, maxRepoParallelism, *repoPar))
	} else {
		o.repoParallel = n
	}
	if s := strings.TrimSpace(*registry); s == "" {
		errs = append(errs, usagef("--registry is required (or set %s), e.g. --registry contoso.azurecr.io", envLoginServer))
	} else if ep, err := acr.ParseEndpoint(s); err != nil {
		errs = append(errs, usagef("--registry: %v", err))
	} else {
		o.registry = ep
	}
	if s := strings.TrimSpace(*pol); s == "" {
		errs = append(errs, usagef("--policy is required (or set %s): inline JSON or @file", envPolicy))
	} else if p, err := policy.Load(s, wd); err != nil {
		errs = append(errs, usagef("--policy: %v", err))
	} else {
		o.policy = p
	}
	switch *output {
	case "table":
	case "json":
		o.json = true
	default:
		errs = append(errs, usagef("--output must be table or json, got %q", *output))
	}
	if o.concurrency < 1 || o.concurrency > maxConcurrency {
		errs = append(errs, usagef("--concurrency must be from 1 to %d, got %d", maxConcurrency, o.concurrency))
	}
	if o.deletesPerMinute < 1 || o.deletesPerMinute > maxDeletesPerMinute {
		errs = append(errs, usagef("--deletes-per-minute must be from 1 to %d, got %d", maxDeletesPerMinute, o.deletesPerMinute))
	}
	if o.batchSize < 1 || o.batchSize > maxBatchSize {
		errs = append(errs, usagef("--batch-size must be from 1 to %d, got %d", maxBatchSize, o.batchSize))
	}
	if o.timeout <= 0 {
		errs = append(errs, usagef("--timeout must be positive, got %s", o.timeout))
	}
	seen := map[string]bool{}
	for _, r := range repos {
		if err := queue.ValidateRepositoryName(r); err != nil {
			errs = append(errs, usagef("--repository %q: %v", r, err))
			continue
		}
		if !seen[r] {
			seen[r] = true
			o.repositories = append(o.repositories, r)
		}
	}
	if len(errs) > 0 {
		return options{}, &usageError{msg: errors.Join(errs...).Error()}
	}
	return o, nil
}
