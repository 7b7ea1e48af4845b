package azurite_test

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

func TestConnString(t *testing.T) {
	t.Parallel()
	got := azurite.ConnString("http://127.0.0.1:12345/devstoreaccount1/")
	want := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azurite.AccountKey +
		";TableEndpoint=http://127.0.0.1:12345/devstoreaccount1;"
	assert.Equal(t, want, got)
}

// tableExists lists the account's tables by name.
func tableExists(t *testing.T, conn, name string) bool {
	t.Helper()
	svc, err := aztables.NewServiceClientFromConnectionString(conn, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	filter := "TableName eq '" + name + "'"
	pager := svc.NewListTablesPager(&aztables.ListTablesOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		require.NoError(t, err)
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
		require.NotEqual(t, a.Name(), b.Name(), "two tables share a name")
		for _, tbl := range []*checkpoint.Table{a, b} {
			require.Regexp(t, `^acrp`, tbl.Name())
			require.True(t, tableExists(t, conn, tbl.Name()), "table %s was not created", tbl.Name())
			names = append(names, tbl.Name())
		}
		_, _, err := a.CreateRun(t.Context(), checkpoint.Run{ID: "r"}, nil)
		require.NoError(t, err)
		_, err = b.GetRun(t.Context(), "r")
		require.Error(t, err, "tables are not isolated")
	})
	for _, n := range names {
		assert.False(t, tableExists(t, conn, n), "table %s survived its test", n)
	}
}
