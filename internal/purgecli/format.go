package purgecli

import (
	"strings"
	"time"
)

// shortDigest shortens "sha256:<64 hex>" to its algorithm and first 12 hex
// characters; anything else is returned as is.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// humanSeconds renders a duration in seconds, rounded for people.
func humanSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
