// Package acr speaks the Azure Container Registry data plane and its token
// protocol.
//
// It has four parts that are meant to be used together:
//
//   - Endpoint (ParseEndpoint): where the registry is. It only ever comes from
//     configuration, never from a message, so a message cannot redirect the
//     worker's credentials to another host.
//   - Broker: turns an AAD credential into ACR refresh and access tokens
//     (POST /oauth2/exchange, POST /oauth2/token), caches them per scope set,
//     renews them before they expire and collapses concurrent mints of the
//     same scope set into one request. Source binds it to one scope set as a
//     TokenSource.
//   - Client: the data-plane calls the purge needs (catalog, tags,
//     manifests, manifest bodies, referrers, deletes, attribute updates) with
//     Link-header paging, typed errors (*Error) and all retrying done
//     inside: 429 waits for Retry-After and slows the Limiter, 5xx and
//     network errors back off exponentially with full jitter, a 401 re-mints
//     the token once.
//   - Limiter: the request budget shared by every Client of a process. Its
//     delete class goes through a Gate, the registry-wide budget shared by
//     every instance (internal/budget), when one is given; the other
//     classes (and deletes without a Gate) have a per-process token bucket
//     with an adaptive factor that a 429 lowers and quiet time restores.
//
// Tokens are carried as Secret, which renders as "[redacted]" through every
// printing, logging and marshalling path; no error or log line of this
// package contains a token.
package acr
