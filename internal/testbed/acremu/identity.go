package acremu

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// AADScope is the only scope Credential.GetToken accepts.
const AADScope = "https://containerregistry.azure.net/.default"

// TenantID is the tenant named in aad_identity claims.
const TenantID = "72f988bf-0000-4000-8000-00000000ac7e"

// DefaultActions returns the actions a Grant with nil Actions allows.
func DefaultActions() []string {
	return []string{acr.ActionPull, acr.ActionPush, acr.ActionDelete, acr.ActionMetadataRead, acr.ActionMetadataWrite}
}

// Identity is a principal with role assignments on the registry.
type Identity struct {
	Name          string
	CatalogLister bool    // may get registry:catalog:*
	Grants        []Grant // repository permissions (ABAC conditions)
}

// Grant is one repository permission: an ABAC role condition
// (StringStartsWithIgnoreCase on the repository name) with its actions.
type Grant struct {
	RepositoryPrefix string   // "" = every repository; case-insensitive prefix match
	Actions          []string // nil = pull,push,delete,metadata_read,metadata_write
}

// identity is a registered Identity. Guarded by Registry.mu.
type identity struct {
	name          string
	catalogLister bool
	grants        []Grant
	oid           string
}

// aadToken is an issued AAD token.
type aadToken struct {
	identity string
	expires  time.Time
}

// Credential is the AAD credential of one identity; it implements
// azcore.TokenCredential.
type Credential struct {
	reg  *Registry
	name string
}

var _ azcore.TokenCredential = (*Credential)(nil)

// Identity is the name of the identity the credential belongs to.
func (c *Credential) Identity() string { return c.name }

// GetToken issues an opaque AAD token for AADScope that the registry accepts
// on /oauth2/exchange until ExpiresOn = Now()+AADTokenTTL.
func (c *Credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if err := ctx.Err(); err != nil {
		return azcore.AccessToken{}, fmt.Errorf("acremu: AAD token for %s: %w", c.name, err)
	}
	if len(opts.Scopes) != 1 || opts.Scopes[0] != AADScope {
		return azcore.AccessToken{}, fmt.Errorf("acremu: AAD token for %s: unsupported scopes %q (want %q)", c.name, opts.Scopes, AADScope)
	}
	r := c.reg
	tok := "aad." + rand.Text() + rand.Text()
	exp := r.Now().Add(r.opts.AADTokenTTL)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.identities[c.name] == nil {
		return azcore.AccessToken{}, fmt.Errorf("acremu: AAD token for %s: unknown identity", c.name)
	}
	if len(r.aad) >= 4096 {
		now := r.Now()
		for k, v := range r.aad {
			if !v.expires.After(now) {
				delete(r.aad, k)
			}
		}
	}
	r.aad[tok] = aadToken{identity: c.name, expires: exp}
	r.stats.AADTokens++
	return azcore.AccessToken{Token: tok, ExpiresOn: exp}, nil
}

// AddIdentity registers (or replaces) an identity and returns its AAD
// credential.
func (r *Registry) AddIdentity(id Identity) *Credential {
	sum := sha256.Sum256([]byte("oid\x00" + id.Name))
	h := hex.EncodeToString(sum[:16])
	oid := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	r.mu.Lock()
	defer r.mu.Unlock()
	r.identities[id.Name] = &identity{
		name:          id.Name,
		catalogLister: id.CatalogLister,
		grants:        cloneGrants(id.Grants),
		oid:           oid,
	}
	return &Credential{reg: r, name: id.Name}
}

// SetGrants replaces the repository grants of a registered identity; tokens
// minted afterwards reflect them (tokens already issued keep their claims).
// Unknown names are ignored.
func (r *Registry) SetGrants(name string, grants []Grant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.identities[name]
	if id == nil {
		r.log.Warn("acremu: SetGrants for an unknown identity ignored", "identity", name)
		return
	}
	id.grants = cloneGrants(grants)
}

// SetCatalogLister changes whether a registered identity may list the
// catalog. Unknown names are ignored.
func (r *Registry) SetCatalogLister(name string, lister bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id := r.identities[name]; id != nil {
		id.catalogLister = lister
	}
}

func cloneGrants(gs []Grant) []Grant {
	out := make([]Grant, len(gs))
	for i, g := range gs {
		out[i] = Grant{RepositoryPrefix: g.RepositoryPrefix, Actions: slices.Clone(g.Actions)}
	}
	return out
}

// allowed returns the actions the identity's grants allow on repository
// name. Caller holds r.mu.
func (id *identity) allowed(name string) map[string]bool {
	lname := strings.ToLower(name)
	return id.actionsOf(func(g Grant) bool { return strings.HasPrefix(lname, strings.ToLower(g.RepositoryPrefix)) })
}

// allowedEverywhere returns the actions granted on every repository (grants
// with an empty prefix). Caller holds r.mu.
func (id *identity) allowedEverywhere() map[string]bool {
	return id.actionsOf(func(g Grant) bool { return g.RepositoryPrefix == "" })
}

// actionsOf returns the union of the actions of the grants that match.
func (id *identity) actionsOf(match func(Grant) bool) map[string]bool {
	out := map[string]bool{}
	for _, g := range id.grants {
		if !match(g) {
			continue
		}
		acts := g.Actions
		if acts == nil {
			acts = DefaultActions()
		}
		for _, a := range acts {
			out[a] = true
		}
	}
	return out
}

// grant computes the access claim for the requested scopes: per scope the
// requested actions that are allowed, merged per resource in order of first
// request; scopes with nothing granted are omitted. Caller holds r.mu.
func (r *Registry) grant(id *identity, requested []acr.Scope) acr.Access {
	type key struct{ typ, name string }
	index := map[key]int{}
	var out acr.Access
	add := func(typ, name string, actions []string) {
		if len(actions) == 0 {
			return
		}
		k := key{typ, name}
		i, ok := index[k]
		if !ok {
			index[k] = len(out)
			out = append(out, acr.Scope{Type: typ, Name: name, Actions: slices.Clone(actions)})
			return
		}
		for _, a := range actions {
			if !slices.Contains(out[i].Actions, a) {
				out[i].Actions = append(out[i].Actions, a)
			}
		}
	}
	for _, s := range requested {
		switch s.Type {
		case "registry":
			if s.Name == "catalog" && id.catalogLister && slices.Contains(s.Actions, "*") {
				add("registry", "catalog", []string{"*"})
			}
		case "repository":
			var allowed map[string]bool
			if strings.Contains(s.Name, "*") {
				if r.opts.ABAC {
					continue // ABAC registries silently ignore wildcard scopes
				}
				allowed = id.allowedEverywhere()
			} else {
				allowed = id.allowed(s.Name)
			}
			var got []string
			for _, a := range s.Actions {
				if a == "*" {
					for _, d := range DefaultActions() {
						if allowed[d] && !slices.Contains(got, d) {
							got = append(got, d)
						}
					}
					continue
				}
				if allowed[a] && !slices.Contains(got, a) {
					got = append(got, a)
				}
			}
			add("repository", s.Name, got)
		}
	}
	if out == nil {
		out = acr.Access{}
	}
	return out
}

// parseScopes splits scope form values (repeated and/or space-separated)
// into scopes; malformed entries are skipped.
func parseScopes(values []string) []acr.Scope {
	var out []acr.Scope
	for _, v := range values {
		for _, f := range strings.Fields(v) {
			first := strings.Index(f, ":")
			last := strings.LastIndex(f, ":")
			if first <= 0 || last == first || last == len(f)-1 {
				continue
			}
			typ, name, acts := f[:first], f[first+1:last], f[last+1:]
			if name == "" {
				continue
			}
			var actions []string
			for _, a := range strings.Split(acts, ",") {
				if a = strings.TrimSpace(a); a != "" {
					actions = append(actions, a)
				}
			}
			out = append(out, acr.Scope{Type: typ, Name: name, Actions: actions})
		}
	}
	return out
}
