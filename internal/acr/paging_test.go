package acr

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestNextLinkHostileHeaders(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  string
		ok    bool
	}{
		{"no target", `; rel="next"`, "", false},
		{"unterminated target", `</acr/v1/_catalog?last=b; rel="next"`, "", false},
		{"lone brackets", `<>`, "", false},
		{"empty", ``, "", false},
		{"rel not next", `</x>; rel="nextpage"`, "", false},
		{"other param says next", `</x>; title="next"`, "", false},
		{"rel value with comma junk", `</x>; rel=next, junk`, "/x", true},
		{"nested angle brackets", `<<https://evil.example/>>; rel="next"`, "https://evil.example/", true},
		{"absolute foreign", `<https://evil.example/acr/v1/_catalog>; rel="next"`, "https://evil.example/acr/v1/_catalog", true},
		{"control bytes", "</a\x00b>; rel=next", "/a\x00b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Link": {tt.value}}
			got, ok := nextLink(h)
			if got != tt.want || ok != tt.ok {
				t.Errorf("nextLink(%q) = %q, %v; want %q, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// resolveNext is what keeps a hostile Link from sending the token away:
// whatever nextLink returns must resolve to the endpoint's own origin.
func TestResolveNextSameOriginOnly(t *testing.T) {
	ep, err := ParseEndpoint("https://r.azurecr.io")
	if err != nil {
		t.Fatal(err)
	}
	current, _ := url.Parse("https://r.azurecr.io/acr/v1/_catalog?n=2")
	good := map[string]string{
		"/acr/v1/_catalog?last=b&n=2":                     "https://r.azurecr.io/acr/v1/_catalog?last=b&n=2",
		"_catalog?last=b":                                 "https://r.azurecr.io/acr/v1/_catalog?last=b",
		"https://R.AZURECR.IO/acr/v1/_catalog?last=b":     "https://R.AZURECR.IO/acr/v1/_catalog?last=b",
		"/acr/v1/_catalog?last=b#frag":                    "https://r.azurecr.io/acr/v1/_catalog?last=b",
		"https://r.azurecr.io/acr/v1/a/_tags?last=x&n=10": "https://r.azurecr.io/acr/v1/a/_tags?last=x&n=10",
	}
	for target, want := range good {
		u, err := resolveNext(ep, current, target)
		if err != nil || u.String() != want {
			t.Errorf("resolveNext(%q) = %v, %v; want %s", target, u, err, want)
		}
	}
	bad := []string{
		"https://evil.example/acr/v1/_catalog",
		"//evil.example/acr/v1/_catalog",
		"http://r.azurecr.io/acr/v1/_catalog",       // scheme downgrade
		"https://r.azurecr.io:8443/acr/v1/_catalog", // other port
		"https://user@r.azurecr.io/acr/v1/_catalog", // user info
		"https://r.azurecr.io@evil.example/x",       // user info hiding the host
		"https://r.azurecr.io.evil.example/x",
		"javascript:alert(1)",
		"file:///etc/passwd",
		"%zz",
		"<https://evil.example/",
		"https://evil.example/\x00",
	}
	for _, target := range bad {
		if u, err := resolveNext(ep, current, target); err == nil {
			t.Errorf("resolveNext(%q) = %s, want an error", target, u)
		}
	}
}

// Paging itself refuses a foreign next link before any request to it, and
// an absolute link back to the registry is followed.
func TestPagingAbsoluteSameOriginLink(t *testing.T) {
	var queries []string
	var base string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		if r.URL.Query().Get("last") == "" {
			w.Header().Set("Link", "<"+base+`/acr/v1/_catalog?last=a&n=1>; rel="next"`)
			_, _ = w.Write([]byte(`{"repositories":["a"]}`))
			return
		}
		_, _ = w.Write([]byte(`{"repositories":["b"]}`))
	})
	c, srv := newTestClient(t, h, &fakeSource{}, func(o *ClientOptions) { o.PageSize = 1 })
	base = srv.URL
	var got []string
	if err := c.Catalog(t.Context(), func(r []string) error { got = append(got, r...); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "a,b" || len(queries) != 2 {
		t.Fatalf("repos %q after queries %q", got, queries)
	}
}
