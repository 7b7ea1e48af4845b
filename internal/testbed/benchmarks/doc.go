// Package benchmarks holds every performance scenario of acrpurge as plain
// code, each returning plain figures: the throughput of the batched,
// concurrent purge against a strictly sequential client (with and without
// injected 5xx answers and 429 storms), the delete budget, the planner's
// peak heap on a huge repository, the fan-out of 100,000 repositories and the
// local stack end to end.
//
// `make bench` runs them all once through cmd/benchtable, which prints one
// table; the Benchmark* functions in the packages under test are thin
// wrappers around the same functions, so `go test -bench` still works and
// there is one copy of each scenario.
//
// Every scenario runs against the ACR emulator (internal/testbed/acremu) on
// loopback, with the real client, token broker, planner and executor. The
// sequential baseline (Sequential) is measured in the same run, on a fresh
// registry seeded identically.
package benchmarks
