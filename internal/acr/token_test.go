package acr

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestParseAccessToken(t *testing.T) {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		raw     string
		granted Access
		wantErr bool
	}{
		{name: "claim", raw: signJWT(t, jwt.MapClaims{"exp": exp.Unix(), "access": []map[string]any{
			{"type": "repository", "name": "a/b", "actions": []string{"pull", "delete"}},
			{"type": "registry", "name": "catalog", "actions": []string{"*"}},
		}}), granted: Access{RepositoryScope("a/b", "pull", "delete"), CatalogScope()}},
		{name: "empty claim", raw: signJWT(t, jwt.MapClaims{"exp": exp.Unix(), "access": []any{}}), granted: Access{}},
		{name: "absent claim", raw: signJWT(t, jwt.MapClaims{"exp": exp.Unix()}), granted: Access{}},
		{name: "null claim", raw: signJWT(t, jwt.MapClaims{"exp": exp.Unix(), "access": nil}), granted: Access{}},
		{name: "no exp", raw: signJWT(t, jwt.MapClaims{"access": []any{}}), wantErr: true},
		{name: "not a JWT", raw: "opaque-secret-token", wantErr: true},
		{name: "bad base64", raw: "eyJ!!!.secretpart.sig", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := parseAccessToken(tt.raw)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error leaks token text: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tok.Expires.Equal(exp) || tok.Value.Reveal() != tt.raw {
				t.Fatalf("token = %+v", tok)
			}
			if tok.Granted == nil || len(tok.Granted) != len(tt.granted) {
				t.Fatalf("granted = %#v, want %#v", tok.Granted, tt.granted)
			}
			for _, s := range tt.granted {
				if !tok.AllowsScope(s) {
					t.Fatalf("%v not allowed by %v", s, tok.Granted)
				}
			}
		})
	}
}

func TestTokenAllows(t *testing.T) {
	tok := &Token{Granted: Access{RepositoryScope("a", "pull", "delete"), {Type: "repository", Name: "all", Actions: []string{"*"}}}}
	cases := []struct {
		repo, action string
		want         bool
	}{
		{"a", "pull", true}, {"a", "delete", true}, {"a", "metadata_write", false},
		{"b", "pull", false}, {"all", "delete", true}, {"A", "pull", false},
	}
	for _, c := range cases {
		if got := tok.Allows(c.repo, c.action); got != c.want {
			t.Errorf("Allows(%q, %q) = %v", c.repo, c.action, got)
		}
	}
	var nilTok *Token
	if nilTok.Allows("a", "pull") || nilTok.AllowsScope(CatalogScope()) {
		t.Error("nil token allows")
	}
	if tok.AllowsScope(Scope{Type: "repository", Name: "a"}) {
		t.Error("a scope without actions is not granted")
	}
	if !tok.AllowsScope(RepositoryScope("a", "pull", "delete")) || tok.AllowsScope(RepositoryScope("a", "pull", "push")) {
		t.Error("AllowsScope")
	}
}

func TestParseRefreshToken(t *testing.T) {
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		claims jwt.MapClaims
		abac   bool
	}{
		{jwt.MapClaims{"exp": exp.Unix()}, false},
		{jwt.MapClaims{"exp": exp.Unix(), "aad_identity": ""}, false},
		{jwt.MapClaims{"exp": exp.Unix(), "aad_identity": `{"oid":"x"}`}, true},
		{jwt.MapClaims{"exp": exp.Unix(), "aad_identity": map[string]any{"oid": "x"}}, true},
	} {
		gotExp, abac, err := parseRefreshToken(signJWT(t, tt.claims))
		if err != nil || !gotExp.Equal(exp) || abac != tt.abac {
			t.Errorf("%v: exp %v abac %v err %v", tt.claims, gotExp, abac, err)
		}
	}
	if _, _, err := parseRefreshToken("nope"); err == nil {
		t.Error("opaque refresh token accepted")
	}
}
