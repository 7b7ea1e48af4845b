//go:build !race

package localstack_test

// raceEnabled: see race_test.go.
const raceEnabled = false
