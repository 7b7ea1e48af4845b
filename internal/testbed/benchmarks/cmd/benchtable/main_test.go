package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/testbed/benchmarks"
)

func TestRunUsage(t *testing.T) {
	noenv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"-only", "throughput,bogus"}, 2, `unknown scenario "bogus"`},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "-only scenarios"},
		{[]string{"-child", "bogus"}, 1, `unknown child "bogus"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), tc.args, &out, &errOut, noenv)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, errOut.String(), tc.err)
			assert.Empty(t, out.String())
		})
	}
}

func TestParseOnly(t *testing.T) {
	all, err := parseOnly("")
	require.NoError(t, err)
	assert.Len(t, all, len(benchmarks.Scenarios))
	some, err := parseOnly(" governance , plan")
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"governance": true, "plan": true}, some)
}

func TestWrap(t *testing.T) {
	text := "- " + strings.Repeat("word ", 60)
	got := wrap(text, 40, "  ")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	require.Greater(t, len(lines), 1)
	for i, l := range lines {
		assert.LessOrEqual(t, len(l), 40, l)
		if i > 0 {
			assert.True(t, strings.HasPrefix(l, "  word"), l)
		}
	}
	assert.Equal(t, strings.Fields(text), strings.Fields(got), "no word lost")
}
