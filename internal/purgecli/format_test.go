package purgecli

import (
	"testing"

	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/stretchr/testify/assert"
)

func TestHumanBytes(t *testing.T) {
	cases := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"},
		{3<<30 + 512<<20, "3.5 GiB"},
		{2 << 40, "2.0 TiB"},
		{1 << 62, "4.0 EiB"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, runs.Bytes(tc.n), "%d", tc.n)
	}
}

func TestShortDigest(t *testing.T) {
	cases := map[string]string{
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": "sha256:0123456789ab",
		"sha256:abc":    "sha256:abc",
		"not-a-digest":  "not-a-digest",
		"":              "",
		"sha512:" + "f": "sha512:f",
	}
	for in, want := range cases {
		assert.Equal(t, want, shortDigest(in), in)
	}
}

func TestByReason(t *testing.T) {
	assert.Equal(t, "keep 3, locked 1, too-new 1", byReason(map[string]int64{"too-new": 1, "keep": 3, "locked": 1}))
}
