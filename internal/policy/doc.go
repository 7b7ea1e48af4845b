// Package policy parses and validates the purge policy (PURGE_POLICY), matches
// repositories and tags with acr purge compatible filters, and plans what to
// delete.
//
// The planner is pure: it is fed listings (tags page by page, then the
// manifests of one repository) and answers with exactly one Decision per tag
// and per manifest, each carrying the reason for it. It performs no I/O of its
// own other than asking a ManifestSource for manifest bodies where the
// protected closure needs them. Dry runs, reports and the executor all share it.
//
// Semantics follow `acr purge` (Azure/acr-cli) so that an ACR Task can be
// replaced without surprises; the places where this package deliberately
// differs are documented next to the code that differs (search for
// "acr purge:").
package policy
