//go:build race

package localstack_test

// raceEnabled: this test binary was built with -race, so the handler
// built for the subprocess tests is too, reusing the same compiled
// packages from the build cache.
const raceEnabled = true
