package acr

import (
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		base    string
		service string
		wantErr string
	}{
		{in: "contoso.azurecr.io", base: "https://contoso.azurecr.io", service: "contoso.azurecr.io"},
		{in: "Contoso.AzureCR.io", base: "https://contoso.azurecr.io", service: "contoso.azurecr.io"},
		{in: "https://contoso.azurecr.io", base: "https://contoso.azurecr.io", service: "contoso.azurecr.io"},
		{in: "https://contoso.azurecr.io/", base: "https://contoso.azurecr.io", service: "contoso.azurecr.io"},
		{in: "HTTPS://CONTOSO.azurecr.io:443", base: "https://contoso.azurecr.io:443", service: "contoso.azurecr.io:443"},
		{in: "  contoso.azurecr.io  ", base: "https://contoso.azurecr.io", service: "contoso.azurecr.io"},
		{in: "http://127.0.0.1:5000", base: "http://127.0.0.1:5000", service: "127.0.0.1:5000"},
		{in: "http://127.9.8.7:5000/", base: "http://127.9.8.7:5000", service: "127.9.8.7:5000"},
		{in: "http://localhost:8080", base: "http://localhost:8080", service: "localhost:8080"},
		{in: "http://LOCALHOST:8080", base: "http://localhost:8080", service: "localhost:8080"},
		{in: "http://[::1]:8080", base: "http://[::1]:8080", service: "[::1]:8080"},

		{in: "", wantErr: "empty"},
		{in: "http://contoso.azurecr.io", wantErr: "loopback"},
		{in: "http://10.0.0.1:5000", wantErr: "loopback"},
		{in: "http://127.0.0.1.evil.com", wantErr: "loopback"},
		{in: "ftp://contoso.azurecr.io", wantErr: "scheme"},
		{in: "https://contoso.azurecr.io/v2", wantErr: "path"},
		{in: "contoso.azurecr.io/team", wantErr: "path"},
		{in: "https://contoso.azurecr.io?x=1", wantErr: "query"},
		{in: "https://contoso.azurecr.io?", wantErr: "query"},
		{in: "https://contoso.azurecr.io#frag", wantErr: "fragment"},
		{in: "https://contoso.azurecr.io#", wantErr: "fragment"},
		{in: "https://user:pw@contoso.azurecr.io", wantErr: "user info"},
		{in: "https://user@contoso.azurecr.io", wantErr: "user info"},
		{in: "https://", wantErr: "empty host"},
		{in: "https://:443", wantErr: "empty host"},
		{in: "https://contoso.azurecr.io:", wantErr: "port"},
		{in: "https://contoso.azurecr.io:99999", wantErr: "port"},
		{in: "https://contoso_x.azurecr.io", wantErr: "host name"},
		{in: "https://contoso..azurecr.io", wantErr: "host name"},
		{in: "mailto:ops@contoso.com", wantErr: ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := ParseEndpoint(tt.in)
			if tt.base == "" {
				if err == nil {
					t.Fatalf("ParseEndpoint(%q) = %v, want error", tt.in, ep.Base)
				}
				if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", tt.in, err)
			}
			if got := ep.Base.String(); got != tt.base {
				t.Errorf("base = %q, want %q", got, tt.base)
			}
			if ep.Service != tt.service {
				t.Errorf("service = %q, want %q", ep.Service, tt.service)
			}
		})
	}
}

func TestEscapeRepository(t *testing.T) {
	tests := []struct {
		repo, want string
		err        bool
	}{
		{repo: "hello-world", want: "hello-world"},
		{repo: "team-a/api", want: "team-a/api"},
		{repo: "a/b/c.d_e", want: "a/b/c.d_e"},
		{repo: "a b", want: "a%20b"},
		{repo: "a%2Fb", want: "a%252Fb"},
		{repo: "a?x=1", want: "a%3Fx=1"},
		{repo: "a#frag", want: "a%23frag"},
		{repo: "../etc", want: "%2E%2E/etc"},
		{repo: "a/./b", want: "a/%2E/b"},
		{repo: "a/..", want: "a/%2E%2E"},
		{repo: "a/...", want: "a/..."},
		{repo: "a;b,c", want: "a%3Bb%2Cc"},
		{repo: "", err: true},
		{repo: "/a", err: true},
		{repo: "a/", err: true},
		{repo: "a//b", err: true},
	}
	for _, tt := range tests {
		got, err := escapeRepository(tt.repo)
		if tt.err {
			if err == nil {
				t.Errorf("escapeRepository(%q) = %q, want error", tt.repo, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("escapeRepository(%q) = %q, %v; want %q", tt.repo, got, err, tt.want)
		}
	}
}
