package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// DefaultTableName is used when TableOptions.Table is empty (CHECKPOINT_TABLE's default).
const DefaultTableName = "purgecheckpoints"

// devStorageConnString is what "UseDevelopmentStorage=true" stands for; aztables
// does not understand the shorthand. The key is Azurite's published
// well-known development key, not a secret.
const devStorageConnString = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
	"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
	"TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"

// tableNameRE is the Table service's rule for table names.
var tableNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,62}$`)

// TableOptions configures NewTable. Set exactly one of ConnectionString or
// ServiceURL (with Credential).
type TableOptions struct {
	// ConnectionString is a shared-key or SAS connection string
	// (CheckpointStorage), e.g. for Azurite. "UseDevelopmentStorage=true"
	// is accepted and means Azurite on 127.0.0.1:10002.
	ConnectionString string
	// ServiceURL is the https table endpoint for identity-based access
	// (CheckpointStorage__tableServiceUri).
	ServiceURL string
	// Credential authenticates requests to ServiceURL.
	Credential azcore.TokenCredential
	// Table is the table name (CHECKPOINT_TABLE); DefaultTableName if empty.
	Table string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// ClientOptions tunes the SDK pipeline (retries, transport); nil means
	// the SDK defaults.
	ClientOptions *aztables.ClientOptions
}

// Table is a Store on Azure Table Storage (or Azurite). It is safe for
// concurrent use.
type Table struct {
	client  *aztables.Client
	name    string
	svc     *aztables.ServiceClient
	log     *slog.Logger
	now     clock
	secrets []string // substrings that must never appear in an error
}

var _ Store = (*Table)(nil)

// NewTable connects to the table service and creates the table if it is
// missing (an existing table is fine): OpenTable, then Ensure. Errors never
// contain the connection string or its key.
func NewTable(ctx context.Context, o TableOptions) (*Table, error) {
	t, err := OpenTable(o)
	if err != nil {
		return nil, err
	}
	if err := t.Ensure(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// OpenTable checks the options and returns the store without talking to
// the service; Ensure creates the table before first use.
func OpenTable(o TableOptions) (*Table, error) {
	t := &Table{name: o.Table, log: o.Logger, now: nowFunc}
	if t.name == "" {
		t.name = DefaultTableName
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if !tableNameRE.MatchString(t.name) {
		return nil, fmt.Errorf("checkpoint: table name %q (CHECKPOINT_TABLE) must be 3-63 letters and digits starting with a letter", t.name)
	}
	var svc *aztables.ServiceClient
	var err error
	switch {
	case o.ConnectionString != "" && o.ServiceURL != "":
		return nil, errors.New("checkpoint: set either a connection string (CheckpointStorage) or a table service URL (CheckpointStorage__tableServiceUri), not both")
	case o.ConnectionString != "":
		conn := expandDevStorage(o.ConnectionString)
		t.secrets = connStringSecrets(conn)
		svc, err = aztables.NewServiceClientFromConnectionString(conn, o.ClientOptions)
		if err != nil {
			return nil, t.wrap("parse connection string (CheckpointStorage)", err)
		}
	case o.ServiceURL != "":
		u, perr := url.Parse(o.ServiceURL)
		if perr != nil || u.Host == "" {
			return nil, fmt.Errorf("checkpoint: table service URL (CheckpointStorage__tableServiceUri) %q is not a URL", o.ServiceURL)
		}
		if u.Scheme != "https" {
			return nil, fmt.Errorf("checkpoint: table service URL (CheckpointStorage__tableServiceUri) %q must use https (token credentials are refused over http; use a connection string for Azurite)", o.ServiceURL)
		}
		if u.RawQuery != "" {
			return nil, errors.New("checkpoint: table service URL (CheckpointStorage__tableServiceUri) must not carry a query string")
		}
		if o.Credential == nil {
			return nil, errors.New("checkpoint: a table service URL (CheckpointStorage__tableServiceUri) needs a credential")
		}
		svc, err = aztables.NewServiceClient(o.ServiceURL, o.Credential, o.ClientOptions)
		if err != nil {
			return nil, t.wrap("create table client", err)
		}
	default:
		return nil, errors.New("checkpoint: no table storage configured: set CheckpointStorage (connection string) or CheckpointStorage__tableServiceUri")
	}
	t.svc, t.client = svc, svc.NewClient(t.name)
	return t, nil
}

// NewTableClient returns a client of the table o names, with o's
// ClientOptions, for other users of the checkpoint table (the shared delete
// budget). Like OpenTable it makes no request: the table is not created.
func NewTableClient(o TableOptions) (*aztables.Client, error) {
	t, err := OpenTable(o)
	if err != nil {
		return nil, err
	}
	return t.client, nil
}

// Ensure creates the table if it is missing; an existing table, or one the
// identity may use but not create, is fine.
func (t *Table) Ensure(ctx context.Context) error { return ensureTable(ctx, t.svc, t) }

// Name returns the table name.
func (t *Table) Name() string { return t.name }

// ensureTable creates the table; "already exists" is success. A 403 is
// accepted only if the table can be read: an identity with data-only roles
// may not create tables although the deployment has, but a wrong key must
// still fail here.
func ensureTable(ctx context.Context, svc *aztables.ServiceClient, t *Table) error {
	_, err := svc.CreateTable(ctx, t.name, nil)
	if err == nil {
		t.log.Info("checkpoint table created", slog.String("table", t.name))
		return nil
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return t.wrap("create table "+t.name, err)
	}
	switch {
	case re.ErrorCode == string(aztables.TableAlreadyExists):
		return nil
	case re.StatusCode == http.StatusForbidden:
		top := int32(1)
		pager := svc.NewClient(t.name).NewListEntitiesPager(&aztables.ListEntitiesOptions{Top: &top})
		if _, perr := pager.NextPage(ctx); perr != nil {
			return t.wrap("create table "+t.name, err)
		}
		t.log.Warn("checkpoint table: not allowed to create it, but it exists",
			slog.String("table", t.name), slog.String("error", t.describe(err)))
		return nil
	}
	return t.wrap("create table "+t.name, err)
}

// expandDevStorage replaces the "UseDevelopmentStorage=true" shorthand.
func expandDevStorage(conn string) string {
	for part := range strings.SplitSeq(conn, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, "UseDevelopmentStorage") && strings.EqualFold(v, "true") {
			return devStorageConnString
		}
	}
	return conn
}

// connStringSecrets lists the parts of a connection string that must never be
// shown: the account key, the SAS token and its signature.
func connStringSecrets(conn string) []string {
	var out []string
	for part := range strings.SplitSeq(conn, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || v == "" {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "accountkey":
			out = append(out, v)
		case "sharedaccesssignature":
			out = append(out, v)
			if q, err := url.ParseQuery(strings.TrimPrefix(v, "?")); err == nil {
				if sig := q.Get("sig"); sig != "" {
					out = append(out, sig, url.QueryEscape(sig))
				}
			}
		}
	}
	out = append(out, conn)
	return out
}
