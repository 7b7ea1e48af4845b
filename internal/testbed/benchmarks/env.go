package benchmarks

import (
	"fmt"

	"github.com/acrpurge/acrpurge/internal/acr"
	"github.com/acrpurge/acrpurge/internal/testbed/acremu"
)

// env is a running emulator with one identity, a token broker for it and a
// client without a token source: what internal/testbed/acremu/emutest gives tests,
// without a testing.TB.
type env struct {
	reg    *acremu.Registry
	broker *acr.Broker
	client *acr.Client
}

// envOptions tune startEnv.
type envOptions struct {
	registry acremu.Options
	identity *acremu.Identity // default: a catalog lister with every permission
	limiter  *acr.Limiter     // nil: unlimited
	retry    acr.RetryPolicy  // zero fields: the client's defaults
}

// startEnv starts an emulator and connects a broker and a client to it.
// Close stops the emulator.
func startEnv(o envOptions) (*env, error) {
	reg := acremu.New(o.registry)
	if err := reg.Start(); err != nil {
		return nil, fmt.Errorf("start the registry emulator: %w", err)
	}
	id := acremu.Identity{Name: "purger", CatalogLister: true, Grants: []acremu.Grant{{}}}
	if o.identity != nil {
		id = *o.identity
	}
	cred := reg.AddIdentity(id)
	ep, err := acr.ParseEndpoint(reg.URL())
	if err != nil {
		reg.Close()
		return nil, fmt.Errorf("emulator endpoint: %w", err)
	}
	broker, client, err := acr.Connect(acr.ConnectOptions{Endpoint: ep, Credential: cred, Limiter: o.limiter, Retry: o.retry, Now: reg.Now})
	if err != nil {
		reg.Close()
		return nil, err
	}
	return &env{reg: reg, broker: broker, client: client}, nil
}

// Close stops the emulator; its content and statistics stay readable.
func (e *env) Close() { e.reg.Close() }
