package acr

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []challenge
	}{
		{
			name: "acr insufficient scope",
			in:   `Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io",scope="repository:team/api:pull,delete",error="insufficient_scope"`,
			want: []challenge{{scheme: "Bearer", params: map[string]string{
				"realm": "https://r.azurecr.io/oauth2/token", "service": "r.azurecr.io",
				"scope": "repository:team/api:pull,delete", "error": "insufficient_scope"}}},
		},
		{
			name: "spaces, case, unquoted and escapes",
			in:   `bearer  Realm = "x\"y" , Service=r.io,  error=invalid_token`,
			want: []challenge{{scheme: "bearer", params: map[string]string{"realm": `x"y`, "service": "r.io", "error": "invalid_token"}}},
		},
		{
			name: "two challenges",
			in:   `Basic realm="a,b", Bearer realm="c",scope="repository:x:pull,push"`,
			want: []challenge{
				{scheme: "Basic", params: map[string]string{"realm": "a,b"}},
				{scheme: "Bearer", params: map[string]string{"realm": "c", "scope": "repository:x:pull,push"}},
			},
		},
		{
			name: "scope with several resources",
			in:   `Bearer scope="repository:a:pull repository:b:delete,pull"`,
			want: []challenge{{scheme: "Bearer", params: map[string]string{"scope": "repository:a:pull repository:b:delete,pull"}}},
		},
		{
			name: "unterminated quote",
			in:   `Bearer realm="abc, service=x`,
			want: []challenge{{scheme: "Bearer", params: map[string]string{"realm": "abc, service=x"}}},
		},
		{name: "empty", in: "", want: nil},
		{name: "bare scheme", in: "Bearer", want: []challenge{{scheme: "Bearer", params: map[string]string{}}}},
		{name: "garbage", in: `"",,= ;`, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseChallenges(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseChallenges(%q)\n got  %#v\n want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestBearerChallengeAcrossHeaders(t *testing.T) {
	h := http.Header{}
	h.Add("WWW-Authenticate", `Basic realm="x"`)
	h.Add("WWW-Authenticate", `Bearer realm="y",error="invalid_token"`)
	p, ok := bearerChallenge(h.Values("WWW-Authenticate"))
	if !ok || p["error"] != "invalid_token" || p["realm"] != "y" {
		t.Fatalf("bearerChallenge = %v, %v", p, ok)
	}
	if _, ok := bearerChallenge([]string{`Basic realm="x"`}); ok {
		t.Fatal("found a Bearer challenge in a Basic one")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{"-1", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"99999999999", 24 * time.Hour, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNextLink(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
		ok     bool
	}{
		{"acr", []string{`</acr/v1/_catalog?last=b&n=2>; rel="next"`}, "/acr/v1/_catalog?last=b&n=2", true},
		{"unquoted rel", []string{`</x?a=1,2>;rel=next`}, "/x?a=1,2", true},
		{"several links", []string{`</prev>; rel="prev", </next>; rel="next"`}, "/next", true},
		{"rel list", []string{`</n>; title="a, b"; rel="last next"`}, "/n", true},
		{"several headers", []string{`</p>; rel="prev"`, `</n>; rel="NEXT"`}, "/n", true},
		{"no next", []string{`</p>; rel="prev"`}, "", false},
		{"none", nil, "", false},
		{"garbage then link", []string{`junk; x="a,b", </n>; rel="next"`}, "/n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("Link", v)
			}
			got, ok := nextLink(h)
			if got != tt.want || ok != tt.ok {
				t.Errorf("nextLink = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
