package acr

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

// ConnectOptions are what the token broker and the data-plane client of
// one process share: the registry, the identity, the HTTP client, the
// retry policy, the clock and the logger, plus the client's limiter and
// page size.
type ConnectOptions struct {
	Endpoint   Endpoint
	Credential azcore.TokenCredential
	Tenant     string           // optional
	HTTPClient *http.Client     // default NewHTTPClient()
	Retry      RetryPolicy      // zero fields take defaults
	Limiter    *Limiter         // nil: unlimited
	PageSize   int              // default 100
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // nil: discard
}

// Connect builds a process's Broker and Client from one set of options,
// the way the app, `handler purge`, the tests and the benchmarks all do:
// the client has no token source of its own; bind one per batch with
// WithTokens(broker.Source(...)).
func Connect(o ConnectOptions) (*Broker, *Client, error) {
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient()
	}
	broker, err := NewBroker(BrokerOptions{
		Endpoint: o.Endpoint, Credential: o.Credential, Tenant: o.Tenant, HTTPClient: o.HTTPClient,
		Now: o.Now, Retry: o.Retry, Logger: o.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("token broker: %w", err)
	}
	client, err := NewClient(ClientOptions{
		Endpoint: o.Endpoint, HTTPClient: o.HTTPClient, Retry: o.Retry, Limiter: o.Limiter,
		PageSize: o.PageSize, Logger: o.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("registry client: %w", err)
	}
	return broker, client, nil
}
