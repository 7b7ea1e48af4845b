// Package acr speaks the Azure Container Registry data plane and its token
// protocol.
//
// # Parts
//
//   - Endpoint (ParseEndpoint): where the registry is. It only ever comes from
//     configuration, never from a message, so a message cannot redirect the
//     worker's credentials to another host.
//   - Broker: turns an AAD credential into ACR refresh and access tokens,
//     caches them, and is bound to one scope set as a TokenSource (Source).
//   - Client: the data-plane calls the purge needs (catalog, tags,
//     manifests, manifest bodies, referrers, deletes, attribute updates). It
//     builds requests and decodes answers, follows rel="next" paging, and
//     reports every non-success answer as *Error; everything else happens in
//     the layers of its HTTP transport.
//   - Limiter: the request budget shared by every Client of a process. Its
//     delete class goes through a Gate, the registry-wide budget shared by
//     every instance (internal/budget), when one is given; the other
//     classes (and deletes without a Gate) have a per-process token bucket
//     with an adaptive factor that a 429 lowers and quiet time restores.
//   - ValidateRepository, ValidateDigest: the repository-name and digest
//     rules of the whole module.
//
// # Tokens, step by step
//
// ACR does not accept the AAD token itself. A call to delete one tag goes
// like this:
//
//  1. The Broker asks the azcore credential for an AAD token for AADScope
//     (cached until shortly before it expires).
//  2. It trades it at POST /oauth2/exchange (grant_type=access_token) for a
//     refresh token: one per registry, valid about three hours, cached and
//     renewed before then. Its aad_identity claim tells whether the registry
//     uses ABAC.
//  3. It trades the refresh token at POST /oauth2/token
//     (grant_type=refresh_token, one scope= per repository and action set)
//     for an access token, a JWT whose access claim lists what was granted.
//     Access tokens are cached per scope set; concurrent askers of one set
//     share one mint.
//  4. The Client's auth layer takes that token from the TokenSource, checks
//     its access claim against the call's scope, and sends the request with
//     Authorization: Bearer.
//  5. If the registry still answers 401 (the token expired early, was
//     revoked, or the grant changed), the auth layer invalidates the token,
//     which makes the Broker mint a fresh one, and sends the request once
//     more. A second 401 goes up to the Client, which reports it, like a
//     403, as ErrNotPermitted.
//
// The Broker's own requests (steps 2 and 3) go through the same layers as
// the Client's except auth: they carry their credentials in the form body.
//
// # Transport layers
//
// The Client's http.Client has this transport, outermost first; each layer
// is an http.RoundTripper with one job:
//
//  1. auth: adds the bearer token and handles 401 as above. It refuses to
//     put a token on a request for another scheme or host than the
//     endpoint's.
//  2. retry: network errors and 5xx (except 501 and 505) back off
//     exponentially with full jitter, at most RetryPolicy.MaxAttempts
//     attempts; a 429 waits for its Retry-After plus jitter, does not count
//     as an attempt, and is retried while the waits of one call stay within
//     MaxThrottle. Bodies are replayed through GetBody; a request whose body
//     cannot be replayed is sent once. When retrying is over, the last
//     answer goes up.
//  3. limiter: each attempt waits for the budget of its class (GET read,
//     DELETE delete, others write); a 429 pauses and slows that class for
//     every Client sharing the Limiter (for deletes with a Gate: for every
//     instance sharing the registry-wide budget), and every other answer is
//     reported as admitted. It sits under retry, so that retried
//     attempts spend budget too. Once an attempt is admitted, the call's
//     send guard (WithSendGuard), if any, gets the last word: the executor
//     refuses there to send a delete whose last read of the item has gone
//     stale while the request waited.
//  4. log: one debug record per attempt with the operation, method, path,
//     attempt number, duration and status or error; never a header, a query
//     or a body.
//  5. body: reads each answer whole, within a bound per call, so that an
//     answer cut off mid-body is a failed attempt that retry repeats.
//  6. base: the Transport of ClientOptions.HTTPClient (NewHTTPClient by
//     default). Redirects are never followed.
//
// Facts about a call that a layer needs (the operation name for logs, the
// scope the token must grant, the body bound) travel in the request's
// context. Every layer works as a zero value: no policy means the default
// RetryPolicy, no Limiter admits everything, no logger stays silent.
//
// # Secrets
//
// Tokens are carried as Secret, which renders as "[redacted]" through every
// printing, logging and marshalling path. The auth layer records which
// tokens it sent so that the Client scrubs them from any text of an error
// answer; no error or log line of this package contains a token.
package acr
