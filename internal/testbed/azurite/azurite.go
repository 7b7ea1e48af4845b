// Package azurite provides Azurite helpers for tests in any package:
// the Azurite connection string, unique table names and ready checkpoint.Table
// stores that are deleted when the test ends.
//
// Azurite is started by `make test` or `.ci/azurite run CMD...`, which export
// AZURITE_TABLE_ENDPOINT (e.g. http://127.0.0.1:PORT/devstoreaccount1) and
// ACRPURGE_REQUIRE_AZURITE=1. Without the endpoint, tests using these helpers
// are skipped, or fail when ACRPURGE_REQUIRE_AZURITE=1.
package azurite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// Environment variables read by the helpers.
const (
	EnvEndpoint = "AZURITE_TABLE_ENDPOINT"
	EnvRequire  = "ACRPURGE_REQUIRE_AZURITE"
)

// AccountKey is Azurite's published development account key (not a secret).
const AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// AccountName is Azurite's development account.
const AccountName = "devstoreaccount1"

// SkipMessage is the reason given when Azurite is not configured.
const SkipMessage = "Azurite not running: run `make test` (starts Azurite) or set AZURITE_TABLE_ENDPOINT"

// ConnString returns the explicit Azurite connection string for a table
// endpoint such as http://127.0.0.1:10002/devstoreaccount1.
func ConnString(endpoint string) string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AccountName + ";AccountKey=" + AccountKey +
		";TableEndpoint=" + strings.TrimRight(endpoint, "/") + ";"
}

// Azurite returns the Azurite connection string. When AZURITE_TABLE_ENDPOINT
// is unset the test fails if ACRPURGE_REQUIRE_AZURITE=1 and is skipped
// otherwise.
func Azurite(t testing.TB) string {
	t.Helper()
	endpoint := strings.TrimSpace(os.Getenv(EnvEndpoint))
	if endpoint == "" {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(EnvRequire + "=1 but " + EnvEndpoint + " is not set")
		}
		t.Skip(SkipMessage)
	}
	return ConnString(endpoint)
}

// TableName returns a fresh table name, unique across parallel tests and
// packages, and deletes that table (if it was created) when the test ends.
func TableName(t testing.TB) string {
	t.Helper()
	conn := Azurite(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("azurite: random table name: %v", err)
	}
	name := "acrp" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svc, err := aztables.NewServiceClientFromConnectionString(conn, nil)
		if err != nil {
			t.Errorf("azurite: delete table %s: %v", name, err)
			return
		}
		_, err = svc.DeleteTable(ctx, name, nil)
		var re *azcore.ResponseError
		if err != nil && !(errors.As(err, &re) && re.StatusCode == 404) {
			t.Errorf("azurite: delete table %s: %v", name, err)
		}
	})
	return name
}

// Options returns TableOptions for a fresh, uniquely named Azurite table
// that is deleted when the test ends.
func Options(t testing.TB) checkpoint.TableOptions {
	t.Helper()
	return checkpoint.TableOptions{ConnectionString: Azurite(t), Table: TableName(t)}
}

// NewTable returns a checkpoint.Table on a fresh, uniquely named Azurite
// table that is deleted when the test ends.
func NewTable(t testing.TB) *checkpoint.Table {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tbl, err := checkpoint.NewTable(ctx, Options(t))
	if err != nil {
		t.Fatalf("azurite: %v", err)
	}
	return tbl
}
