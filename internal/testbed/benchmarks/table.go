package benchmarks

import (
	"context"
	"fmt"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// benchTable is a fresh table for one scenario, dropped at its end.
type benchTable struct {
	opts checkpoint.TableOptions
}

// newTable creates a fresh, uniquely named table on the account of conn.
func newTable(ctx context.Context, conn string) (*benchTable, error) {
	name, err := tableName()
	if err != nil {
		return nil, err
	}
	opts := checkpoint.TableOptions{ConnectionString: conn, Table: name}
	if _, err := checkpoint.NewTable(ctx, opts); err != nil {
		return nil, fmt.Errorf("table %s: %w", name, err)
	}
	return &benchTable{opts: opts}, nil
}

// drop deletes the table (best effort: a benchmark's figures do not depend
// on it).
func (t *benchTable) drop() {
	_ = deleteTable(context.Background(), t.opts.ConnectionString, t.opts.Table)
}
