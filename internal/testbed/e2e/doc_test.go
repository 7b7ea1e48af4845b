// Package e2e_test runs the Functions app end to end in one process with the
// harness of internal/testbed/e2e/e2etest: the ACR emulator (ABAC registry, identity
// limited to some prefixes), Azurite for the checkpoints, an in-memory queue
// standing in for Service Bus, and the custom handler served over HTTP,
// driven with requests shaped exactly like the Functions host's.
package e2e_test
