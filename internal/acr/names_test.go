package acr

import (
	"strings"
	"testing"
)

func TestValidateDigest(t *testing.T) {
	hex64 := strings.Repeat("0123456789abcdef", 4)
	good := []string{
		"sha256:" + hex64,
		"sha512:" + hex64 + hex64,
		// Unregistered algorithms follow the generic grammar.
		"multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
		"sha384:abc",
		"a.b_c-d:A=_-z",
	}
	bad := map[string]string{
		"":                                      "algorithm:encoded",
		"latest":                                "algorithm:encoded",
		"sha256:":                               "algorithm:encoded",
		":abc":                                  "algorithm:encoded",
		"sha256:abc":                            "64 lowercase hex",
		"sha256:" + hex64 + "0":                 "64 lowercase hex",
		"sha256:" + strings.ToUpper(hex64):      "64 lowercase hex",
		"sha256:" + hex64[:63] + "g":            "64 lowercase hex",
		"sha512:abc":                            "128 lowercase hex",
		"sha512:" + hex64:                       "128 lowercase hex",
		"SHA256:" + hex64:                       "algorithm must be",
		"sha256+:abc":                           "algorithm must be",
		"+sha:abc":                              "algorithm must be",
		"sha..256:abc":                          "algorithm must be",
		"sha 256:abc":                           "algorithm must be",
		"x:ab/c":                                `'/' at offset 4`,
		"x:a b":                                 `' ' at offset 3`,
		"x:../x":                                `'.' at offset 2`,
		"x:" + strings.Repeat("a", 255):         "longer than 256",
		"sha256:" + hex64 + "?x":                "64 lowercase hex",
		"sha256:" + hex64[:32] + "%2F" + "aa":   "64 lowercase hex",
		"sha256:" + hex64[:60] + "\u00e9\u00e9": "64 lowercase hex",
	}
	for _, d := range good {
		if err := ValidateDigest(d); err != nil {
			t.Errorf("ValidateDigest(%q) = %v", d, err)
		}
	}
	for d, want := range bad {
		err := ValidateDigest(d)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateDigest(%q) = %v, want %q", d, err, want)
		}
	}
}

func TestValidateRepository(t *testing.T) {
	valid := []string{
		"a", "team-a/api", "a.b_c__d---e/f0/9", "library/ubuntu", "a-b/c.d/e_f",
		strings.Repeat("a", MaxRepositoryLength),
		strings.Repeat("ab/", 85) + "a",
	}
	for _, n := range valid {
		if err := ValidateRepository(n); err != nil {
			t.Errorf("ValidateRepository(%q) = %v", n, err)
		}
	}
	invalid := map[string]string{
		"": "empty",
		strings.Repeat("a", MaxRepositoryLength+1): "longer than 256",
		"Team/api":  "uppercase letter 'T' at offset 0",
		"/a":        "starts with '/'",
		"a/":        "ends with '/'",
		"a//b":      "empty path component at offset 2",
		"-a":        "starts with '-'",
		"a-":        "ends with '-'",
		"a/_b":      "starts with '_'",
		"a..b":      `separator ".."`,
		"a___b":     `separator "___"`,
		"a._b":      `separator "._"`,
		"a-.b":      `separator "-."`,
		".":         `path component "."`,
		"a/../b":    `path component ".."`,
		"a b":       "space at offset 1",
		"a%2Fb":     "'%' at offset 1",
		"a?b":       `'?' at offset 1`,
		"a#b":       `'#' at offset 1`,
		"a\\b":      `'\\' at offset 1`,
		"a:b":       `':' at offset 1`,
		"a@b":       `'@'`,
		"a;b":       `';' at offset 1`,
		"a+b":       `'+'`,
		"a\x00b":    "control character 0x00",
		"a\x7fb":    "control character 0x7f",
		"caf\u00e9": "non-ASCII character at offset 3",
		"a\xffb":    "not valid UTF-8",
	}
	for n, want := range invalid {
		err := ValidateRepository(n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateRepository(%q) = %v, want %q", n, err, want)
		}
	}
}
