// Package migrate converts acr purge commands and ACR Task files into
// acrpurge policies: `handler policy convert` and `handler policy check`.
//
// Input is read as a person would paste it: `acr purge ...` command lines
// (quoted as a shell would quote them), `az acr run` / `az acr task create`
// lines whose --cmd holds an acr purge command (their --schedule becomes
// PURGE_SCHEDULE), shell assignments such as PURGE_CMD="acr purge ..." that
// a later --cmd "$PURGE_CMD" refers to, or an ACR Task YAML file whose cmd
// steps run acr purge. Every acr purge flag is either converted or named in
// an error; nothing is silently dropped.
//
// Each acr purge command becomes one policy rule. Flags that are settings of
// the app rather than part of the policy (--dry-run, --concurrency,
// --registry, a task's timer) are returned as settings, and every place
// where the converted policy behaves differently from acr purge is returned
// as a note. The policy is always checked with policy.Parse before it is
// returned.
package migrate
