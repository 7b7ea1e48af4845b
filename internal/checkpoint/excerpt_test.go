package checkpoint_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
)

func TestExcerpt(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain {\"a\":1}", `plain {"a":1}`},
		{"tab\tnl\ncr\r", `tab\tnl\ncr\r`},
		{"nul\x00del\x7f", `nul\u0000del\u007f`},
		{"bidi\u202eevil", `bidi\u202eevil`},
		{"back\\slash", `back\\slash`},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, checkpoint.Excerpt([]byte(c.in)), c.in)
	}
	long := strings.Repeat("é", checkpoint.ExcerptBytes) // 2 bytes each
	got := checkpoint.Excerpt([]byte(long))
	assert.True(t, strings.HasSuffix(got, "…"))
	assert.Equal(t, strings.Repeat("é", checkpoint.ExcerptBytes/2)+"…", got, "cut on a rune boundary")
	odd := "x" + long
	got = checkpoint.Excerpt([]byte(odd))
	assert.Equal(t, "x"+strings.Repeat("é", checkpoint.ExcerptBytes/2-1)+"…", got)
}
