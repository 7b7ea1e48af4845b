package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestExpandDevStorage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want string
	}{
		{"UseDevelopmentStorage=true", devStorageConnString},
		{"usedevelopmentstorage=TRUE;", devStorageConnString},
		{"AccountName=a;AccountKey=b", "AccountName=a;AccountKey=b"},
		{"UseDevelopmentStorage=false", "UseDevelopmentStorage=false"},
	} {
		if got := expandDevStorage(c.in); got != c.want {
			t.Errorf("expandDevStorage(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestScrubRemovesSecrets(t *testing.T) {
	t.Parallel()
	conn := "AccountName=acct;SharedAccessSignature=sv=2022-11-02&ss=t&sig=AbC%2Bdef%3D;TableEndpoint=https://acct.table.core.windows.net"
	tbl := &Table{secrets: connStringSecrets(conn)}
	for _, c := range []struct {
		name string
		err  error
		leak []string
		keep string
	}{
		{
			name: "transport error with SAS in the URL",
			err:  &url.Error{Op: "Get", URL: "https://acct.table.core.windows.net/t()?sv=2022-11-02&sig=AbC%2Bdef%3D", Err: errors.New("dial tcp: no such host")},
			leak: []string{"AbC%2Bdef%3D", "sig=AbC"},
			keep: "no such host",
		},
		{
			name: "wrapped text carrying the connection string",
			err:  fmt.Errorf("boom: %s", conn),
			leak: []string{"AbC%2Bdef%3D", conn},
			keep: "boom",
		},
		{
			name: "account key pattern",
			err:  errors.New("bad AccountKey=c2VjcmV0c2VjcmV0; and SharedKey acct:c2lnbmF0dXJl"),
			leak: []string{"c2VjcmV0c2VjcmV0", "c2lnbmF0dXJl"},
			keep: "AccountKey=[REDACTED]",
		},
	} {
		err := tbl.wrap("op", c.err)
		for _, l := range c.leak {
			if strings.Contains(err.Error(), l) {
				t.Errorf("%s: %q leaks %q", c.name, err, l)
			}
		}
		if !strings.Contains(err.Error(), c.keep) {
			t.Errorf("%s: %q lost %q", c.name, err, c.keep)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%s: the SDK error is not wrapped", c.name)
		}
	}
}

func TestChunkSplitsByCountAndBytes(t *testing.T) {
	t.Parallel()
	mk := func(n, size int) []txOp {
		ops := make([]txOp, n)
		for i := range ops {
			ops[i] = txOp{aztables.TransactionTypeInsertReplace, entity("p", fmt.Sprintf("r%d", i), kindRepo,
				map[string]any{"Cursor": strings.Repeat("x", size)})}
		}
		return ops
	}
	for _, c := range []struct {
		n, size int
		want    []int
	}{
		{0, 1, nil},
		{1, 1, []int{1}},
		{100, 1, []int{100}},
		{101, 1, []int{100, 1}},
		{250, 1, []int{100, 100, 50}},
		{100, 60 << 10, []int{51, 49}}, // 100 rows of 60 KiB exceed the byte budget
	} {
		txs, err := chunk(mk(c.n, c.size))
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, tx := range txs {
			sizes = append(sizes, len(tx))
			total := 0
			for _, a := range tx {
				total += len(a.Entity)
			}
			if len(tx) > 1 && total > maxTxBytes {
				t.Errorf("transaction of %d bytes exceeds the budget", total)
			}
		}
		if fmt.Sprint(sizes) != fmt.Sprint(c.want) {
			t.Errorf("chunk(%d ops of %d bytes) = %v, want %v", c.n, c.size, sizes, c.want)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	at := mustParse(t, "2025-03-14T15:09:26.5358979Z")
	repo := Repo{RunID: "r", Name: "a/b", Batch: 3, Status: StatusPartial, Reason: "x", Error: "y", Cursor: `{"c":1}`,
		TagsDeleted: 1 << 40, ManifestsDeleted: -1, BytesFreed: 1<<62 + 1, Kept: map[string]int64{"keep": 2}, Attempts: 4, Updated: at}
	raw, err := json.Marshal(repoEntity(repo))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"BytesFreed@odata.type":"Edm.Int64"`) {
		t.Errorf("counters must be annotated Edm.Int64: %s", raw)
	}
	var e aztables.EDMEntity
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	got, err := decodeRepo(e)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(repo) || !got.Updated.Equal(repo.Updated) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, repo)
	}

	// Hand-edited rows: Int32 numbers and wrong types.
	e = aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: "p", RowKey: "r"}, Properties: map[string]any{
		"Name": "n", "Batch": int32(2), "TagsDeleted": float64(7)}}
	got, err = decodeRepo(e)
	if err != nil || got.Batch != 2 || got.TagsDeleted != 7 {
		t.Errorf("tolerant decode = %+v, %v", got, err)
	}
	e.Properties["Attempts"] = "three"
	if _, err := decodeRepo(e); err == nil {
		t.Error("a string counter must be reported")
	}
}
