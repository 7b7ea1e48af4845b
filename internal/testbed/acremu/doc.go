// Package acremu is an in-process emulator of an Azure Container Registry
// (ACR): a real HTTP server on 127.0.0.1 that speaks ACR's token protocol and
// the parts of its data plane that a purge tool uses. Tests, the local demo
// (`handler local`), benchmarks and the fault-injection suite run against it.
//
// # Faithful to ACR
//
//   - Token flow: an AAD token (from [Credential], an azcore.TokenCredential)
//     is exchanged at POST /oauth2/exchange for a refresh token, which is
//     traded at POST /oauth2/token for an access token. Both are HS256 JWTs
//     signed with a per-emulator random key and verified on every use;
//     lifetimes default to ACR's (refresh 3 h, access 75 min, AAD 1 h).
//     Refresh tokens of an ABAC registry carry an aad_identity claim.
//   - Scopes may be repeated or space-separated. The access claim lists, per
//     requested scope, only the requested actions the identity's grants allow;
//     a partial grant still answers 200 and ungranted scopes are omitted. In
//     ABAC mode, repository scopes containing '*' are silently ignored.
//   - The data plane authorizes from the access claim alone (as ACR does), and
//     answers 401 with a WWW-Authenticate Bearer challenge naming realm,
//     service, the missing scope and error="insufficient_scope" or
//     error="invalid_token" (bad signature, expired: exp <= Now()).
//   - Listings (catalog, tags, manifests) page with n/last and a relative
//     Link: <...>; rel="next" header. Tags and manifests accept
//     orderby=timedesc|timeasc; in those orders `last` is looked up by
//     position, so if the cursor item was deleted in the meantime the page is
//     EMPTY. Real ACR behaves this way and clients must not delete the cursor
//     item before fetching the next page; the emulator keeps the behaviour on
//     purpose so tests catch such clients.
//   - Deleting a manifest removes its tags and, recursively, the manifests
//     whose subject it is (referrers); deleting an index leaves its children.
//     Locked items (deleteEnabled or writeEnabled false) answer 405
//     REGISTRY_DISALLOWED_OPERATION. Unknown items answer 404 NAME_UNKNOWN,
//     TAG_UNKNOWN or MANIFEST_UNKNOWN. A repository with no manifests left
//     disappears from the catalog.
//   - Manifest bodies are real JSON whose digest is the sha256 of the bytes
//     served; indexes list their children, referrers carry a subject, and the
//     OCI referrers API (with artifactType filtering) is served.
//   - Throttling, per fixed window, answered with 429, Retry-After in whole
//     seconds and a TOOMANYREQUESTS error body: a registry-wide limit on
//     write operations (deletes and PATCHes of every identity together, as
//     a SKU's WriteOps limit), and per-identity limits per operation class
//     (read = GET/HEAD, write = PATCH, delete = DELETE).
//   - AAD tokens for separate processes: StartIdentityEndpoint serves the
//     App Service managed-identity protocol (IDENTITY_ENDPOINT,
//     IDENTITY_HEADER, client_id), so `handler serve` signs in with its
//     production credential, a user-assigned managed identity.
//   - Repository names keep '/' in the path and every segment may be
//     percent-escaped; routes are found from the right of the escaped path.
//   - Errors are always JSON {"errors":[{"code","message","detail"}]}.
//
// # Simplified
//
//   - Role assignments are modelled as [Grant]s (repository prefix, matched
//     case-insensitively, plus actions) in both ABAC and non-ABAC mode; in
//     non-ABAC mode a wildcard repository scope is granted only to an identity
//     with a grant for every repository (empty prefix), and '*' in a granted
//     name matches any characters at authorization time.
//   - AAD tokens are opaque random strings known only to this emulator; the
//     tenant form field is ignored; there is no basic auth, no anonymous pull
//     and no admin user.
//   - No blobs, uploads or pushes over HTTP: content is created with
//     [Registry.Put]. Layer and config digests are synthetic.
//   - readEnabled and listEnabled are stored and reported but not enforced
//     (nothing is hidden from listings or pulls); locks on referrers do not
//     stop a cascade from their subject's deletion.
//   - The "signed" field of tags is always false.
//   - The clock ([Registry.Now]) is the wall clock plus an adjustable offset,
//     used for token lifetimes and default timestamps. Throttling windows use
//     the plain wall clock (time.Now) instead, so that a test that calls
//     [Registry.Advance] to expire tokens does not also reset, or prematurely
//     open, a throttling window; Retry-After is therefore real seconds.
//   - Fault injection ([Faults]) picks failing requests from a per-emulator
//     request counter hashed with the seed: a serial client sees the same
//     failures on every run; concurrent clients see the same number of
//     failures but not necessarily on the same requests.
package acremu
