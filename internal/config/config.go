// Package config loads and validates the app settings (environment variables)
// once at start-up. A bad value stops start-up with an error naming the setting.
// The setting names are a contract shared with function.json, host.json,
// local.settings.sample.json, the README and the Bicep templates; Names lists
// them and a contract test keeps those places in step.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/ncrontab"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// Setting names.
const (
	LoginServer          = "ACR_LOGIN_SERVER"
	Policy               = "PURGE_POLICY"
	Schedule             = "PURGE_SCHEDULE"
	Queue                = "PURGE_QUEUE"
	ServiceBusNamespace  = "ServiceBusConnection__fullyQualifiedNamespace"
	ServiceBusConnString = "ServiceBusConnection"
	CheckpointURI        = "CheckpointStorage__tableServiceUri"
	CheckpointConnString = "CheckpointStorage"
	CheckpointTable      = "CHECKPOINT_TABLE"
	ClientID             = "AZURE_CLIENT_ID"
	BatchSize            = "ABAC_BATCH_SIZE"
	Concurrency          = "PURGE_CONCURRENCY"
	RepoParallelism      = "PURGE_REPOSITORY_PARALLELISM"
	DeletesPerMinute     = "PURGE_DELETES_PER_MINUTE"
	MaxInstances         = "PURGE_MAX_INSTANCES"
	DryRun               = "PURGE_DRY_RUN"
	Repositories         = "PURGE_REPOSITORIES"
	PushDebounce         = "PUSH_DEBOUNCE"
	MessageDeadline      = "PURGE_MESSAGE_DEADLINE"
	MaxDeliveries        = "PURGE_MAX_DELIVERIES"
	HandlerPort          = "FUNCTIONS_CUSTOMHANDLER_PORT"
)

// Names is every setting the app reads, in documentation order.
var Names = []string{
	LoginServer, Policy, Schedule, Queue, ServiceBusNamespace, ServiceBusConnString,
	CheckpointURI, CheckpointConnString, CheckpointTable, ClientID, BatchSize, Concurrency,
	RepoParallelism, DeletesPerMinute, MaxInstances, DryRun, Repositories, PushDebounce, MessageDeadline, MaxDeliveries,
	HandlerPort,
}

// Defaults of the optional settings.
const (
	DefaultSchedule        = "0 0 2 * * *"
	DefaultQueue           = "acr-purge"
	DefaultCheckpointTable = "purgecheckpoints"
	DefaultBatchSize       = 10
	DefaultConcurrency     = 8
	// DefaultRepoParallelism is how many repositories of one message (or
	// of a CLI run) are purged at once.
	DefaultRepoParallelism = 4
	// DefaultDeletesPerMinute is the budget of the whole registry when the
	// setting is not given: half the documented minimum WriteOps/min of a
	// Standard registry (500), leaving the other half to pushes. The
	// Bicep sets it from the registry's SKU (Basic 50, Standard 250,
	// Premium 1000).
	DefaultDeletesPerMinute = 250
	// MaxDeletesPerMinute bounds the setting: far above any SKU's limit,
	// low enough to catch a typo.
	MaxDeletesPerMinute = 1_000_000
	// DefaultMaxInstances is infra's Flex Consumption maximumInstanceCount:
	// the divisor of the local share an instance keeps to while the
	// shared budget's table cannot be reached.
	DefaultMaxInstances    = 40
	MaxMaxInstances        = 1000
	DefaultPushDebounce    = 10 * time.Minute
	DefaultMessageDeadline = 8 * time.Minute
	// MaxMessageDeadline keeps an invocation (deadline, grace, set-up) inside
	// the 15 minutes host.json renews a message's lock for; past that,
	// Service Bus would deliver the message again while it is being worked.
	MaxMessageDeadline   = 10 * time.Minute
	DefaultMaxDeliveries = 5
	// MaxBatchSize keeps one batch's checkpoint rows (repositories + the batch row)
	// inside one Table Storage transaction (100 operations).
	MaxBatchSize = queue.MaxBatchRepositories
)

// Config is the validated configuration.
type Config struct {
	Registry acr.Endpoint
	// PolicySetting is PURGE_POLICY as given: inline JSON or @file.
	PolicySetting string
	Schedule      *ncrontab.Schedule
	Queue         string
	// Service Bus: a namespace (identity-based) or a connection string.
	ServiceBusNamespace  string
	ServiceBusConnString acr.Secret
	// Checkpoints: a table endpoint (identity-based) or a connection string.
	CheckpointURI        string
	CheckpointConnString acr.Secret
	CheckpointTable      string
	ClientID             string
	BatchSize            int
	Concurrency          int
	RepoParallelism      int
	DeletesPerMinute     int
	MaxInstances         int
	DryRun               bool
	Repositories         []string
	PushDebounce         time.Duration
	MessageDeadline      time.Duration
	MaxDeliveries        int
	Port                 int
}

// Requirement says which optional parts a command needs.
type Requirement struct {
	ServiceBus bool // the handler sends messages (Scheduler, continuations)
	Checkpoint bool // the handler writes checkpoints
	Port       bool // the handler listens for the Functions host
}

// Load reads settings through getenv (os.Getenv in production) and validates
// them. Every problem is reported, each naming its setting.
func Load(getenv func(string) string, need Requirement) (*Config, error) {
	l := loader{getenv: getenv}
	c := &Config{}

	if v := l.get(LoginServer); v == "" {
		l.fail(LoginServer, "is required (e.g. contoso.azurecr.io)")
	} else if strings.Contains(v, "@") {
		// Not echoed: it may hold credentials.
		l.fail(LoginServer, "must be a login server such as contoso.azurecr.io, without user information")
	} else if ep, err := acr.ParseEndpoint(v); err != nil {
		l.fail(LoginServer, err.Error())
	} else {
		c.Registry = ep
	}

	c.PolicySetting = l.get(Policy)
	if c.PolicySetting == "" {
		l.fail(Policy, "is required: inline JSON or @file relative to the app root")
	}

	expr := l.getOr(Schedule, DefaultSchedule)
	if s, err := ncrontab.Parse(expr); err != nil {
		l.fail(Schedule, err.Error())
	} else {
		c.Schedule = s
	}

	c.Queue = l.getOr(Queue, DefaultQueue)
	if !queueName.MatchString(c.Queue) {
		l.fail(Queue, fmt.Sprintf("%q is not a valid queue name (letters, digits, '.', '-', '_', '/', up to 260)", c.Queue))
	}

	c.ServiceBusNamespace = l.get(ServiceBusNamespace)
	c.ServiceBusConnString = acr.Secret(l.get(ServiceBusConnString))
	if c.ServiceBusNamespace != "" {
		if strings.Contains(c.ServiceBusNamespace, "/") || strings.Contains(c.ServiceBusNamespace, ":") {
			l.fail(ServiceBusNamespace, "must be a host name like contoso.servicebus.windows.net")
		}
	} else if need.ServiceBus && c.ServiceBusConnString == "" {
		l.fail(ServiceBusNamespace, "or "+ServiceBusConnString+" is required")
	}

	c.CheckpointURI = l.get(CheckpointURI)
	c.CheckpointConnString = acr.Secret(l.get(CheckpointConnString))
	if c.CheckpointURI != "" {
		if u, err := url.Parse(c.CheckpointURI); err != nil || u.Scheme != "https" || u.Host == "" {
			l.fail(CheckpointURI, "must be an https URL like https://account.table.core.windows.net")
		}
	} else if need.Checkpoint && c.CheckpointConnString == "" {
		l.fail(CheckpointURI, "or "+CheckpointConnString+" is required")
	}

	c.CheckpointTable = l.getOr(CheckpointTable, DefaultCheckpointTable)
	if !tableName.MatchString(c.CheckpointTable) {
		l.fail(CheckpointTable, fmt.Sprintf("%q is not a valid table name (3-63 letters and digits, starting with a letter)", c.CheckpointTable))
	}

	c.ClientID = l.get(ClientID)
	c.BatchSize = l.intIn(BatchSize, DefaultBatchSize, 1, MaxBatchSize)
	c.Concurrency = l.intIn(Concurrency, DefaultConcurrency, 1, 64)
	c.RepoParallelism = l.intIn(RepoParallelism, DefaultRepoParallelism, 1, 64)
	c.DeletesPerMinute = l.intIn(DeletesPerMinute, DefaultDeletesPerMinute, 1, MaxDeletesPerMinute)
	c.MaxInstances = l.intIn(MaxInstances, DefaultMaxInstances, 1, MaxMaxInstances)
	c.DryRun = l.boolean(DryRun, false)
	c.Repositories = l.list(Repositories)
	for _, r := range c.Repositories {
		if err := queue.ValidateRepositoryName(r); err != nil {
			l.fail(Repositories, fmt.Sprintf("entry %.300q: %v", r, err))
		}
	}
	c.PushDebounce = l.duration(PushDebounce, DefaultPushDebounce, 0, 24*time.Hour)
	c.MessageDeadline = l.duration(MessageDeadline, DefaultMessageDeadline, time.Second, MaxMessageDeadline)
	c.MaxDeliveries = l.intIn(MaxDeliveries, DefaultMaxDeliveries, 1, 2000)

	if need.Port {
		c.Port = l.intIn(HandlerPort, 0, 1, 65535)
		if l.get(HandlerPort) == "" {
			l.fail(HandlerPort, "is required (the Functions host sets it)")
		}
	}

	if err := errors.Join(l.errs...); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

var (
	queueName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-/]{0,259}$`)
	tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)
)

type loader struct {
	getenv func(string) string
	errs   []error
}

func (l *loader) get(name string) string { return strings.TrimSpace(l.getenv(name)) }

func (l *loader) getOr(name, def string) string {
	if v := l.get(name); v != "" {
		return v
	}
	return def
}

func (l *loader) fail(name, msg string) {
	l.errs = append(l.errs, fmt.Errorf("  %s %s", name, msg))
}

func (l *loader) intIn(name string, def, lo, hi int) int {
	v := l.get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		l.fail(name, fmt.Sprintf("must be a whole number from %d to %d, got %q", lo, hi, v))
		return def
	}
	return n
}

func (l *loader) boolean(name string, def bool) bool {
	v := l.get(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.fail(name, fmt.Sprintf("must be true or false, got %q", v))
		return def
	}
	return b
}

func (l *loader) duration(name string, def, lo, hi time.Duration) time.Duration {
	v := l.get(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		l.fail(name, fmt.Sprintf("must be a duration such as 10m or 90s from %s to %s, got %q", lo, hi, v))
		return def
	}
	return d
}

// list splits a comma/space/newline separated list, dropping empties and duplicates.
func (l *loader) list(name string) []string {
	v := l.get(name)
	if v == "" {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\t' }) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}
