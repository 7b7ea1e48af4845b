package azurite_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

func TestConnString(t *testing.T) {
	t.Parallel()
	got := azurite.ConnString("http://127.0.0.1:12345/devstoreaccount1/")
	want := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azurite.AccountKey +
		";TableEndpoint=http://127.0.0.1:12345/devstoreaccount1;"
	if got != want {
		t.Errorf("ConnString = %q, want %q", got, want)
	}
}

// tableExists lists the account's tables by name.
func tableExists(t *testing.T, conn, name string) bool {
	t.Helper()
	svc, err := aztables.NewServiceClientFromConnectionString(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	filter := "TableName eq '" + name + "'"
	pager := svc.NewListTablesPager(&aztables.ListTablesOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range page.Tables {
			if tb.Name != nil && *tb.Name == name {
				return true
			}
		}
	}
	return false
}

func TestNewTableIsUniqueAndDeletedAtCleanup(t *testing.T) {
	conn := azurite.Azurite(t)
	var names []string
	t.Run("use", func(t *testing.T) {
		a, b := azurite.NewTable(t), azurite.NewTable(t)
		if a.Name() == b.Name() {
			t.Fatalf("two tables share the name %s", a.Name())
		}
		for _, tbl := range []*checkpoint.Table{a, b} {
			if !strings.HasPrefix(tbl.Name(), "acrp") || !tableExists(t, conn, tbl.Name()) {
				t.Fatalf("table %s was not created", tbl.Name())
			}
			names = append(names, tbl.Name())
		}
		if _, _, err := a.CreateRun(t.Context(), checkpoint.Run{ID: "r"}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := b.GetRun(t.Context(), "r"); err == nil {
			t.Fatal("tables are not isolated")
		}
	})
	for _, n := range names {
		if tableExists(t, conn, n) {
			t.Errorf("table %s survived its test", n)
		}
	}
}
