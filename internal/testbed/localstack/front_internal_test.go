package localstack

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFileSafe(t *testing.T) {
	for id, want := range map[string]string{
		"s-20250304T020000Z": "s-20250304T020000Z",
		"../../etc/passwd":   ".._.._etc_passwd",
		"..":                 "_..",
		`a<b>"c` + "\u00e9":  "a_b__c_",
	} {
		assert.Equal(t, want, fileSafe(id), id)
	}
}
