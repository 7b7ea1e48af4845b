package checkpoint_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

// Table-only behaviour: construction, secrets in errors, and the crash and
// race windows of CreateRun, provoked with a pipeline policy.

func TestNewTableRejectsBadOptions(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString([]byte("not-the-real-key-but-a-secret!!"))
	cases := []struct {
		name string
		o    checkpoint.TableOptions
		want string
	}{
		{"nothing configured", checkpoint.TableOptions{}, "CheckpointStorage"},
		{"both configured", checkpoint.TableOptions{ConnectionString: "AccountName=a;AccountKey=" + key, ServiceURL: "https://a.table.core.windows.net"}, "not both"},
		{"http service URL", checkpoint.TableOptions{ServiceURL: "http://127.0.0.1:1/devstoreaccount1", Credential: fakeCredential{}}, "https"},
		{"service URL without credential", checkpoint.TableOptions{ServiceURL: "https://a.table.core.windows.net"}, "credential"},
		{"service URL with query", checkpoint.TableOptions{ServiceURL: "https://a.table.core.windows.net/?sig=" + key, Credential: fakeCredential{}}, "query"},
		{"bad table name", checkpoint.TableOptions{ConnectionString: "AccountName=a;AccountKey=" + key, Table: "no-dashes"}, "CHECKPOINT_TABLE"},
		{"malformed connection string", checkpoint.TableOptions{ConnectionString: "AccountKey=" + key}, "connection string"},
		{"key not base64", checkpoint.TableOptions{ConnectionString: "AccountName=a;AccountKey=" + key + "!!;TableEndpoint=http://127.0.0.1:1/a"}, "account key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			tbl, err := checkpoint.NewTable(ctx, c.o)
			mustTrue(t, err != nil && tbl == nil, "NewTable must fail")
			checkTrue(t, strings.Contains(err.Error(), c.want), "error %q should mention %q", err, c.want)
			checkTrue(t, !strings.Contains(err.Error(), key), "error leaks the key: %q", err)
		})
	}
}

// fakeCredential is never asked for a token: construction fails first.
type fakeCredential struct{}

func (fakeCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("fake credential")
}

func TestNewTableToleratesExistingTable(t *testing.T) {
	t.Parallel()
	o := azurite.Options(t)
	ctx := t.Context()
	first, err := checkpoint.NewTable(ctx, o)
	must(t, err)
	_, _, err = first.CreateRun(ctx, checkpoint.Run{ID: "r", Started: base}, nil)
	must(t, err)
	second, err := checkpoint.NewTable(ctx, o)
	must(t, err, "second NewTable on an existing table")
	checkEqual(t, o.Table, second.Name())
	got, err := second.GetRun(ctx, "r")
	must(t, err)
	checkEqual(t, norm(base), got.Started)
}

func TestTableErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	conn := azurite.Azurite(t)
	// A well-formed but wrong key: every request fails authentication.
	wrongKey := base64.StdEncoding.EncodeToString([]byte("a wrong key that must stay secret, 64 bytes long..............."))
	bad := strings.Replace(conn, azurite.AccountKey, wrongKey, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := checkpoint.NewTable(ctx, checkpoint.TableOptions{ConnectionString: bad, Table: azurite.TableName(t),
		ClientOptions: noRetries()})
	mustTrue(t, err != nil, "a wrong key must fail")
	var re *azcore.ResponseError
	mustTrue(t, errors.As(err, &re), "error %v wraps an *azcore.ResponseError", err)
	checkEqual(t, http.StatusForbidden, re.StatusCode)
	for _, secret := range []string{wrongKey, bad, azurite.AccountKey} {
		checkTrue(t, !strings.Contains(err.Error(), secret), "error leaks a secret: %q", err)
	}
	checkTrue(t, !strings.Contains(err.Error(), "\n"), "error is one line: %q", err)
}

func TestTableErrorsOnDeletedTable(t *testing.T) {
	t.Parallel()
	o := azurite.Options(t)
	ctx := t.Context()
	tbl, err := checkpoint.NewTable(ctx, o)
	must(t, err)
	svc, err := aztables.NewServiceClientFromConnectionString(o.ConnectionString, nil)
	must(t, err)
	_, err = svc.DeleteTable(ctx, o.Table, nil)
	must(t, err)

	// A missing table is an error, not "no such run".
	_, err = tbl.GetRun(ctx, "r")
	mustTrue(t, err != nil && !errors.Is(err, checkpoint.ErrNotFound), "GetRun on a deleted table: %v", err)
	checkTrue(t, strings.Contains(err.Error(), "TableNotFound"), "error names the code: %v", err)
	_, _, err = tbl.LastPurge(ctx, "a")
	checkTrue(t, err != nil, "LastPurge on a deleted table must fail")
	_, _, err = tbl.CreateRun(ctx, checkpoint.Run{ID: "r"}, nil)
	checkTrue(t, err != nil && !strings.Contains(err.Error(), azurite.AccountKey), "CreateRun on a deleted table: %v", err)
}

// hook is a per-call pipeline policy that runs fn before each request.
type hook struct {
	fn func(req *policy.Request) error
}

func (h hook) Do(req *policy.Request) (*http.Response, error) {
	if err := h.fn(req); err != nil {
		return nil, err
	}
	return req.Next()
}

func isBatch(req *policy.Request) bool {
	return req.Raw().Method == http.MethodPost && strings.HasSuffix(req.Raw().URL.Path, "$batch")
}

func noRetries() *aztables.ClientOptions {
	o := &aztables.ClientOptions{}
	o.Retry.MaxRetries = -1
	return o
}

func withHook(fn func(req *policy.Request) error) *aztables.ClientOptions {
	o := noRetries()
	o.PerCallPolicies = []policy.Policy{hook{fn}}
	return o
}

// A create that dies after the batch rows but before the run row leaves no
// run behind; retrying it, even with another start time, completes the run.
func TestCreateRunRetryAfterPartialFailure(t *testing.T) {
	t.Parallel()
	o := azurite.Options(t)
	ctx := t.Context()
	var mu sync.Mutex
	batchCalls := 0
	failing := o
	failing.ClientOptions = withHook(func(req *policy.Request) error {
		if !isBatch(req) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		batchCalls++
		if batchCalls == 2 { // transaction 2 (batch rows) passes, then the run row fails
			return errors.New("injected network failure")
		}
		return nil
	})
	broken, err := checkpoint.NewTable(ctx, failing)
	must(t, err)
	const n = 150
	_, _, err = broken.CreateRun(ctx, checkpoint.Run{ID: "crash", Started: base, Batches: n}, makeBatches("crash", n, 1))
	mustTrue(t, err != nil && strings.Contains(err.Error(), "injected"), "the injected failure surfaces: %v", err)

	tbl, err := checkpoint.NewTable(ctx, o)
	must(t, err)
	_, err = tbl.GetRun(ctx, "crash")
	checkErrorIs(t, err, checkpoint.ErrNotFound, "no run row after a failed create")
	runs, err := tbl.LatestRuns(ctx, 10)
	must(t, err)
	checkLen(t, runs, 0, "the dangling index row is not listed")

	retry := checkpoint.Run{ID: "crash", Started: base.Add(time.Minute), Batches: n}
	got, created, err := tbl.CreateRun(ctx, retry, makeBatches("crash", n, 2))
	must(t, err)
	mustTrue(t, created, "the retry creates the run")
	checkEqual(t, norm(retry.Started), got.Started)
	batches, err := tbl.ListBatches(ctx, "crash")
	must(t, err)
	mustLen(t, batches, n)
	for _, b := range batches {
		mustLen(t, b.Repositories, 2, "batch %d has the retry's content", b.N)
	}
	runs, err = tbl.LatestRuns(ctx, 10)
	must(t, err)
	mustLen(t, runs, 1, "the stale index row of the first attempt is skipped")
	checkEqual(t, got, runs[0])
}

// When another creator commits between our existence check and our run-row
// transaction, the transaction fails as a whole and we report its run.
func TestCreateRunLosesRace(t *testing.T) {
	t.Parallel()
	o := azurite.Options(t)
	ctx := t.Context()
	rival, err := checkpoint.NewTable(ctx, o)
	must(t, err)
	rivalRun := checkpoint.Run{ID: "race", Trigger: "rival", Started: base, Batches: 50}
	var once sync.Once
	var rivalErr error
	raced := o
	raced.ClientOptions = withHook(func(req *policy.Request) error {
		if isBatch(req) {
			once.Do(func() {
				_, _, rivalErr = rival.CreateRun(req.Raw().Context(), rivalRun, makeBatches("race", 50, 3))
			})
		}
		return nil
	})
	tbl, err := checkpoint.NewTable(ctx, raced)
	must(t, err)
	got, created, err := tbl.CreateRun(ctx, checkpoint.Run{ID: "race", Trigger: "us", Started: base.Add(time.Second), Batches: 50}, makeBatches("race", 50, 1))
	must(t, rivalErr, "rival create")
	must(t, err)
	checkTrue(t, !created, "we lost the race")
	want := rivalRun
	want.Started = norm(base)
	checkEqual(t, want, got)
	batches, err := tbl.ListBatches(ctx, "race")
	must(t, err)
	mustLen(t, batches, 50)
	for _, b := range batches {
		// Our batch rows shared the failed transaction and were rolled back.
		mustLen(t, b.Repositories, 3, "batch %d keeps the rival's content", b.N)
	}
	runs, err := tbl.LatestRuns(ctx, 10)
	must(t, err)
	mustLen(t, runs, 1, "our index row points at a run that started at another time")
	checkEqual(t, want, runs[0])
}

// Transactions hold at most 100 operations: count the $batch requests.
func TestTransactionsSplitAt100(t *testing.T) {
	t.Parallel()
	cases := []struct {
		batches, repos int
		withBatch      bool
		createTx       int
		saveTx         int
	}{
		{batches: 0, repos: 0, createTx: 1, saveTx: 0},
		{batches: 99, repos: 100, createTx: 1, saveTx: 1},
		{batches: 100, repos: 100, withBatch: true, createTx: 2, saveTx: 2},
		{batches: 200, repos: 201, createTx: 3, saveTx: 3},
	}
	conn := azurite.Azurite(t)
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d-batches-%d-repos", c.batches, c.repos), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			count := 0
			o := checkpoint.TableOptions{ConnectionString: conn, Table: azurite.TableName(t),
				ClientOptions: withHook(func(req *policy.Request) error {
					if isBatch(req) {
						mu.Lock()
						count++
						mu.Unlock()
					}
					return nil
				})}
			ctx := t.Context()
			tbl, err := checkpoint.NewTable(ctx, o)
			must(t, err)
			_, _, err = tbl.CreateRun(ctx, checkpoint.Run{ID: "s", Started: base}, makeBatches("s", c.batches, 1))
			must(t, err)
			checkEqual(t, c.createTx, count, "CreateRun transactions")
			count = 0
			repos := make([]checkpoint.Repo, c.repos)
			for i := range repos {
				repos[i] = checkpoint.Repo{Name: fmt.Sprintf("r%04d", i), Status: checkpoint.StatusDone}
			}
			var b *checkpoint.Batch
			if c.withBatch {
				b = &checkpoint.Batch{N: 0, Status: checkpoint.StatusDone}
			}
			must(t, tbl.SaveProgress(ctx, "s", repos, b))
			checkEqual(t, c.saveTx, count, "SaveProgress transactions")
			list, err := tbl.ListRepos(ctx, "s")
			must(t, err)
			checkLen(t, list, c.repos)
		})
	}
}

func TestUseDevelopmentStorageIsUnderstood(t *testing.T) {
	t.Parallel()
	// Nothing listens on the default Azurite port in tests (.ci/azurite picks
	// a free one), so the shorthand must get as far as a connection error,
	// not a connection-string parse error.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := checkpoint.NewTable(ctx, checkpoint.TableOptions{ConnectionString: "UseDevelopmentStorage=true", ClientOptions: noRetries()})
	if err == nil {
		t.Skip("something answers on 127.0.0.1:10002")
	}
	checkTrue(t, strings.Contains(err.Error(), "127.0.0.1:10002"), "error names the Azurite endpoint: %v", err)
	checkTrue(t, !strings.Contains(err.Error(), azurite.AccountKey), "error leaks the key: %v", err)
}
