package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// Transaction limits: at most 100 operations and 4 MiB per entity group
// transaction; the byte budget leaves room for the multipart framing.
const (
	maxTxOps   = 100
	maxTxBytes = 3 << 20
)

// txOp is one operation of an entity group transaction.
type txOp struct {
	kind aztables.TransactionType
	e    aztables.EDMEntity
}

// get reads one row; a missing row is ErrNotFound.
func (t *Table) get(ctx context.Context, op, pk, rk string) (aztables.EDMEntity, error) {
	resp, err := t.client.GetEntity(ctx, pk, rk, nil)
	if err != nil {
		if isNotFound(err) {
			return aztables.EDMEntity{}, fmt.Errorf("checkpoint: %s: %w", op, ErrNotFound)
		}
		return aztables.EDMEntity{}, t.wrap(op, err)
	}
	var e aztables.EDMEntity
	if err := json.Unmarshal(resp.Value, &e); err != nil {
		return aztables.EDMEntity{}, fmt.Errorf("checkpoint: %s: decode row %s/%s: %w", op, pk, rk, err)
	}
	return e, nil
}

// upsert inserts or replaces one row.
func (t *Table) upsert(ctx context.Context, op string, e aztables.EDMEntity) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("checkpoint: %s: encode row: %w", op, err)
	}
	_, err = t.client.UpsertEntity(ctx, b, &aztables.UpsertEntityOptions{UpdateMode: aztables.UpdateModeReplace})
	return t.wrap(op, err)
}

// query pages through the rows matching filter, pageSize at a time (0 = the
// service's page size), until fn returns false.
func (t *Table) query(ctx context.Context, op, filter string, pageSize int, fn func(aztables.EDMEntity) (more bool, err error)) error {
	opts := &aztables.ListEntitiesOptions{Filter: &filter}
	if pageSize > 0 {
		top := int32(min(pageSize, 1000))
		opts.Top = &top
	}
	pager := t.client.NewListEntitiesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return t.wrap(op, err)
		}
		for _, raw := range page.Entities {
			var e aztables.EDMEntity
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("checkpoint: %s: decode row: %w", op, err)
			}
			more, err := fn(e)
			if err != nil {
				return fmt.Errorf("checkpoint: %s: %w", op, err)
			}
			if !more {
				return nil
			}
		}
	}
	return nil
}

// chunk groups operations into transactions of at most maxTxOps operations
// and about maxTxBytes of entity data, keeping their order.
func chunk(ops []txOp) ([][]aztables.TransactionAction, error) {
	var out [][]aztables.TransactionAction
	var cur []aztables.TransactionAction
	size := 0
	for _, o := range ops {
		b, err := json.Marshal(o.e)
		if err != nil {
			return nil, fmt.Errorf("encode row %s/%s: %w", o.e.PartitionKey, o.e.RowKey, err)
		}
		if len(cur) == maxTxOps || (len(cur) > 0 && size+len(b) > maxTxBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, aztables.TransactionAction{ActionType: o.kind, Entity: b})
		size += len(b)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, nil
}

// submit runs one entity group transaction.
func (t *Table) submit(ctx context.Context, op string, actions []aztables.TransactionAction) error {
	_, err := t.client.SubmitTransaction(ctx, actions, nil)
	return t.wrap(op, err)
}

// odataString quotes s as an OData string literal.
func odataString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// prefixFilter selects the rows of partition pk whose RowKey starts with
// prefix, which must end in '|'.
func prefixFilter(pk, prefix string) string {
	end := strings.TrimSuffix(prefix, "|") + rangeEnd
	return fmt.Sprintf("PartitionKey eq %s and RowKey ge %s and RowKey lt %s",
		odataString(pk), odataString(prefix), odataString(end))
}
