package checkpoint

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// Kinds tag every row so the table can be read in Storage Explorer.
const (
	kindRun       = "run"
	kindBatch     = "batch"
	kindRepo      = "repo"
	kindRunIndex  = "runindex"
	kindLast      = "last"
	kindRejection = "rejection"
)

func entity(pk, rk, kind string, props map[string]any) aztables.EDMEntity {
	props["Kind"] = kind
	return aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: pk, RowKey: rk}, Properties: props}
}

func i64(v int) aztables.EDMInt64 { return aztables.EDMInt64(int64(v)) }

func runEntity(r Run) aztables.EDMEntity {
	return entity(runPartition(r.ID), runRowKey, kindRun, map[string]any{
		"RunID":        r.ID,
		"Trigger":      r.Trigger,
		"DryRun":       r.DryRun,
		"PolicyHash":   r.PolicyHash,
		"Started":      aztables.EDMDateTime(r.Started),
		"Batches":      i64(r.Batches),
		"Repositories": i64(r.Repositories),
		"Enqueued":     r.Enqueued,
		"Note":         r.Note,
	})
}

func decodeRun(e aztables.EDMEntity) (Run, error) {
	d := decoder{e: e}
	r := Run{
		ID:           d.str("RunID"),
		Trigger:      d.str("Trigger"),
		DryRun:       d.boolean("DryRun"),
		PolicyHash:   d.str("PolicyHash"),
		Started:      d.time("Started"),
		Batches:      d.integer("Batches"),
		Repositories: d.integer("Repositories"),
		Enqueued:     d.boolean("Enqueued"),
		Note:         d.str("Note"),
	}
	return r, d.err
}

func indexEntity(r Run) aztables.EDMEntity {
	return entity(runsPartition, timedRow(r.Started, r.ID), kindRunIndex, map[string]any{
		"RunID":   r.ID,
		"Started": aztables.EDMDateTime(r.Started),
	})
}

func batchEntity(b Batch) aztables.EDMEntity {
	return entity(runPartition(b.RunID), batchRow(b.N), kindBatch, map[string]any{
		"RunID":         b.RunID,
		"N":             i64(b.N),
		"Repositories":  jsonOrEmpty(b.Repositories),
		"Status":        string(b.Status),
		"Deliveries":    i64(b.Deliveries),
		"Continuations": i64(b.Continuations),
		"Error":         b.Error,
		"Updated":       aztables.EDMDateTime(b.Updated),
	})
}

func decodeBatch(e aztables.EDMEntity) (Batch, error) {
	d := decoder{e: e}
	b := Batch{
		RunID:         d.str("RunID"),
		N:             d.integer("N"),
		Status:        Status(d.str("Status")),
		Deliveries:    d.integer("Deliveries"),
		Continuations: d.integer("Continuations"),
		Error:         d.str("Error"),
		Updated:       d.time("Updated"),
	}
	d.json("Repositories", &b.Repositories)
	if len(b.Repositories) == 0 {
		b.Repositories = nil
	}
	return b, d.err
}

func repoEntity(r Repo) aztables.EDMEntity {
	return entity(runPartition(r.RunID), repoRow(r.Name), kindRepo, map[string]any{
		"RunID":            r.RunID,
		"Name":             r.Name,
		"Batch":            i64(r.Batch),
		"Status":           string(r.Status),
		"Reason":           r.Reason,
		"Error":            r.Error,
		"Cursor":           r.Cursor,
		"TagsDeleted":      aztables.EDMInt64(r.TagsDeleted),
		"ManifestsDeleted": aztables.EDMInt64(r.ManifestsDeleted),
		"BytesFreed":       aztables.EDMInt64(r.BytesFreed),
		"Kept":             jsonOrEmpty(r.Kept),
		"Attempts":         i64(r.Attempts),
		"Updated":          aztables.EDMDateTime(r.Updated),
		"Live":             jsonOrEmpty(r.Live),
		"AtLeast":          r.AtLeast,
	})
}

func decodeRepo(e aztables.EDMEntity) (Repo, error) {
	d := decoder{e: e}
	r := Repo{
		RunID:            d.str("RunID"),
		Name:             d.str("Name"),
		Batch:            d.integer("Batch"),
		Status:           Status(d.str("Status")),
		Reason:           d.str("Reason"),
		Error:            d.str("Error"),
		Cursor:           d.str("Cursor"),
		TagsDeleted:      d.int64("TagsDeleted"),
		ManifestsDeleted: d.int64("ManifestsDeleted"),
		BytesFreed:       d.int64("BytesFreed"),
		Attempts:         d.integer("Attempts"),
		Updated:          d.time("Updated"),
	}
	d.json("Kept", &r.Kept)
	if len(r.Kept) == 0 {
		r.Kept = nil
	}
	d.json("Live", &r.Live)
	if len(r.Live) == 0 {
		r.Live = nil
	}
	r.AtLeast, _ = e.Properties["AtLeast"].(bool)
	if r.Name == "" && d.err == nil {
		d.err = fmt.Errorf("row %s/%s has no Name", e.PartitionKey, e.RowKey)
	}
	return r, d.err
}

func lastEntity(repo string, at time.Time, runID string) aztables.EDMEntity {
	return entity(lastPartition(repo), lastRowKey, kindLast, map[string]any{
		"Repository": repo,
		"At":         aztables.EDMDateTime(at),
		"RunID":      runID,
	})
}

func rejectionEntity(r Rejection) aztables.EDMEntity {
	return entity(rejPartition, timedRow(r.At, r.MessageID), kindRejection, map[string]any{
		"MessageID": r.MessageID,
		"Reason":    r.Reason,
		"Excerpt":   r.Excerpt,
		"At":        aztables.EDMDateTime(r.At),
	})
}

func decodeRejection(e aztables.EDMEntity) (Rejection, error) {
	d := decoder{e: e}
	r := Rejection{
		MessageID: d.str("MessageID"),
		Reason:    d.str("Reason"),
		Excerpt:   d.str("Excerpt"),
		At:        d.time("At"),
	}
	return r, d.err
}

// jsonOrEmpty encodes a slice or map, or "" when it is empty.
func jsonOrEmpty[T any](v T) string {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" || string(b) == "[]" || string(b) == "{}" {
		return ""
	}
	return string(b)
}

// decoder reads typed properties, tolerating the types a hand-edited row may
// have (Int32 for Int64, strings for dates), and remembers the first error.
type decoder struct {
	e   aztables.EDMEntity
	err error
}

func (d *decoder) fail(name string, v any) {
	if d.err == nil {
		d.err = fmt.Errorf("row %s/%s: property %s has unexpected type %T", d.e.PartitionKey, d.e.RowKey, name, v)
	}
}

func (d *decoder) str(name string) string {
	switch v := d.e.Properties[name].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		d.fail(name, v)
		return ""
	}
}

func (d *decoder) boolean(name string) bool {
	switch v := d.e.Properties[name].(type) {
	case nil:
		return false
	case bool:
		return v
	default:
		d.fail(name, v)
		return false
	}
}

func (d *decoder) int64(name string) int64 {
	switch v := d.e.Properties[name].(type) {
	case nil:
		return 0
	case aztables.EDMInt64:
		return int64(v)
	case int32:
		return int64(v)
	case int64:
		return v
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
	}
	d.fail(name, d.e.Properties[name])
	return 0
}

func (d *decoder) integer(name string) int { return int(d.int64(name)) }

func (d *decoder) time(name string) time.Time {
	switch v := d.e.Properties[name].(type) {
	case nil:
		return time.Time{}
	case aztables.EDMDateTime:
		return time.Time(v).UTC()
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err == nil {
			return t.UTC()
		}
	}
	d.fail(name, d.e.Properties[name])
	return time.Time{}
}

func (d *decoder) json(name string, into any) {
	s := d.str(name)
	if s == "" || d.err != nil {
		return
	}
	if err := json.Unmarshal([]byte(s), into); err != nil {
		d.err = fmt.Errorf("row %s/%s: property %s: %w", d.e.PartitionKey, d.e.RowKey, name, err)
	}
}
