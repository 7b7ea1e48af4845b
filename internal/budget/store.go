package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

// fields is one row's properties; every value is an Edm.Int64.
type fields map[string]int64

func (f fields) clone() fields {
	c := make(fields, len(f))
	for k, v := range f {
		c[k] = v
	}
	return c
}

// Outcomes of store calls that are part of the protocol, not failures.
var (
	errNotFound = errors.New("row not found")
	errExists   = errors.New("row already exists")
	errChanged  = errors.New("row changed since it was read")
)

// store keeps the budget's rows with optimistic concurrency: every row has
// an ETag, and update succeeds only if the row still has the one given.
type store interface {
	// get returns the row, or errNotFound.
	get(ctx context.Context, row string) (fields, string, error)
	// add creates the row, or returns errExists.
	add(ctx context.Context, row string, f fields) (string, error)
	// update replaces the row if its ETag is still etag, or returns
	// errChanged (also when the row is gone).
	update(ctx context.Context, row string, f fields, etag string) (string, error)
}

// memStore is a store in this process: the local budget.
type memStore struct {
	mu   sync.Mutex
	rows map[string]memRow
	seq  int64
}

type memRow struct {
	f    fields
	etag string
}

func newMemStore() *memStore { return &memStore{rows: map[string]memRow{}} }

func (m *memStore) nextETag() string {
	m.seq++
	return strconv.FormatInt(m.seq, 10)
}

func (m *memStore) get(_ context.Context, row string) (fields, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[row]
	if !ok {
		return nil, "", errNotFound
	}
	return r.f.clone(), r.etag, nil
}

func (m *memStore) add(_ context.Context, row string, f fields) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rows[row]; ok {
		return "", errExists
	}
	e := m.nextETag()
	m.rows[row] = memRow{f: f.clone(), etag: e}
	return e, nil
}

func (m *memStore) update(_ context.Context, row string, f fields, etag string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[row]
	if !ok || r.etag != etag {
		return "", errChanged
	}
	e := m.nextETag()
	m.rows[row] = memRow{f: f.clone(), etag: e}
	return e, nil
}

// tableStore keeps the rows in one partition of an Azure table.
type tableStore struct {
	c  *aztables.Client
	pk string
}

// partitionKey is the budget's partition for the registry host scope
// (table keys cannot contain '/', '\', '#' or '?': escaped).
func partitionKey(scope string) string { return "budget|" + checkpoint.EscapeKey(scope) }

func (s *tableStore) get(ctx context.Context, row string) (fields, string, error) {
	resp, err := s.c.GetEntity(ctx, s.pk, row, nil)
	if err != nil {
		if status(err) == http.StatusNotFound && !tableMissing(err) {
			return nil, "", errNotFound
		}
		return nil, "", storeError("read "+row, err)
	}
	var e aztables.EDMEntity
	if err := json.Unmarshal(resp.Value, &e); err != nil {
		return nil, "", fmt.Errorf("budget: decode row %s: %w", row, err)
	}
	f := fields{}
	for k, v := range e.Properties {
		switch n := v.(type) {
		case aztables.EDMInt64:
			f[k] = int64(n)
		case int32:
			f[k] = int64(n)
		case float64:
			f[k] = int64(n)
		}
	}
	return f, string(resp.ETag), nil
}

func (s *tableStore) entity(row string, f fields) ([]byte, error) {
	props := make(map[string]any, len(f))
	for k, v := range f {
		props[k] = aztables.EDMInt64(v)
	}
	return json.Marshal(aztables.EDMEntity{Entity: aztables.Entity{PartitionKey: s.pk, RowKey: row}, Properties: props})
}

func (s *tableStore) add(ctx context.Context, row string, f fields) (string, error) {
	b, err := s.entity(row, f)
	if err != nil {
		return "", err
	}
	resp, err := s.c.AddEntity(ctx, b, nil)
	if err != nil {
		if status(err) == http.StatusConflict {
			return "", errExists
		}
		return "", storeError("create "+row, err)
	}
	return string(resp.ETag), nil
}

func (s *tableStore) update(ctx context.Context, row string, f fields, etag string) (string, error) {
	b, err := s.entity(row, f)
	if err != nil {
		return "", err
	}
	tag := azcore.ETag(etag)
	resp, err := s.c.UpdateEntity(ctx, b, &aztables.UpdateEntityOptions{IfMatch: &tag, UpdateMode: aztables.UpdateModeReplace})
	if err != nil {
		switch st := status(err); {
		case st == http.StatusPreconditionFailed, st == http.StatusNotFound && !tableMissing(err):
			return "", errChanged
		}
		return "", storeError("update "+row, err)
	}
	return string(resp.ETag), nil
}

// status is the HTTP status of a service error, 0 for anything else.
func status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// tableMissing reports a 404 for the table itself (not for a row): a store
// failure, not part of the protocol.
func tableMissing(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.ErrorCode == string(aztables.TableNotFound)
}

// StoreError is a failed or timed-out call to the shared store. Its message
// names the operation and the service's status and code, or the transport
// error, without URLs' query strings (no SAS signature is ever shown).
type StoreError struct {
	Op  string
	Msg string
	Err error
}

func (e *StoreError) Error() string { return "budget: " + e.Op + ": " + e.Msg }
func (e *StoreError) Unwrap() error { return e.Err }

var sigRE = regexp.MustCompile(`(?i)(sig=)[^&\s"';]+`)

func storeError(op string, err error) error {
	var re *azcore.ResponseError
	var ue *url.Error
	var msg string
	switch {
	case errors.As(err, &re):
		code := re.ErrorCode
		if code == "" {
			code = "no error code"
		}
		msg = fmt.Sprintf("table service answered %d %s (%s)", re.StatusCode, http.StatusText(re.StatusCode), code)
	case errors.As(err, &ue):
		target := "request"
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.Fragment, u.User = "", "", nil
			target = u.String()
		}
		msg = fmt.Sprintf("%s %s: %v", ue.Op, target, ue.Err)
	default:
		msg = err.Error()
	}
	return &StoreError{Op: op, Msg: sigRE.ReplaceAllString(msg, "${1}REDACTED"), Err: err}
}
