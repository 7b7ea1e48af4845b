// Package emutest wires the ACR emulator to the real token broker and client
// for tests and benchmarks in other packages: one call gives a running
// registry, an identity, and a client that gets its tokens the way
// production does.
package emutest

import (
	"testing"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// Env is a running emulator with one identity and a broker for it.
type Env struct {
	Registry *acremu.Registry
	Cred     *acremu.Credential
	Endpoint acr.Endpoint
	Broker   *acr.Broker
	// Client has no token source; bind one with Scoped or WithTokens.
	Client *acr.Client
}

// Options tune Start.
type Options struct {
	Registry acremu.Options
	// Identity defaults to a catalog lister with every permission.
	Identity *acremu.Identity
	Limiter  *acr.Limiter
	PageSize int
	Retry    acr.RetryPolicy
}

// Start starts an emulator (stopped at cleanup) and connects a broker and
// client to it as Identity.
func Start(tb testing.TB, o Options) *Env {
	tb.Helper()
	reg := acremu.New(o.Registry)
	if err := reg.Start(); err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	tb.Cleanup(reg.Close)
	id := acremu.Identity{Name: "purger", CatalogLister: true, Grants: []acremu.Grant{{}}}
	if o.Identity != nil {
		id = *o.Identity
	}
	cred := reg.AddIdentity(id)
	ep, err := acr.ParseEndpoint(reg.URL())
	if err != nil {
		tb.Fatalf("endpoint: %v", err)
	}
	broker, client, err := acr.Connect(acr.ConnectOptions{
		Endpoint: ep, Credential: cred, Limiter: o.Limiter, PageSize: o.PageSize, Retry: o.Retry, Now: reg.Now,
	})
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	return &Env{Registry: reg, Cred: cred, Endpoint: ep, Broker: broker, Client: client}
}

// Scoped returns a client whose tokens cover exactly repos, as a worker's
// client for one message.
func (e *Env) Scoped(repos ...string) *acr.Client {
	return e.Client.WithTokens(e.Broker.Source(acr.PurgeScopes(repos)...))
}
