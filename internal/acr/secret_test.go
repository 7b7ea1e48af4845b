package acr

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestSecretNeverPrinted(t *testing.T) {
	const raw = "eyJhbGciOiJIUzI1NiJ9.super-secret-value.sig"
	s := Secret(raw)
	tok := &Token{Value: s, Expires: time.Now(), Granted: Access{RepositoryScope("a", "pull")}}
	type wrapper struct {
		Name  string
		Token *Token
		Raw   Secret
	}
	w := wrapper{Name: "x", Token: tok, Raw: s}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%d"} {
		outputs = append(outputs,
			fmt.Sprintf(verb, s), fmt.Sprintf(verb, tok), fmt.Sprintf(verb, *tok), fmt.Sprintf(verb, w), fmt.Sprintf(verb, &w))
	}
	outputs = append(outputs, fmt.Sprint(s, tok), fmt.Sprintln(w), s.String(), s.GoString())
	for _, v := range []any{s, tok, w, map[string]Secret{"k": s}, []Secret{s}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, string(b))
	}
	text, _ := s.MarshalText()
	outputs = append(outputs, string(text))

	var logs syncBuffer
	jl := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tl := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, l := range []*slog.Logger{jl, tl} {
		l.Debug("m", "secret", s, "token", tok, "wrapper", w, slog.Any("any", s), slog.Group("g", "s", s))
	}
	outputs = append(outputs, logs.String())

	for i, out := range outputs {
		if strings.Contains(out, "super-secret") {
			t.Errorf("output %d leaks the secret: %s", i, out)
		}
	}
	if !strings.Contains(logs.String(), redacted) || !strings.Contains(fmt.Sprint(s), redacted) {
		t.Error("placeholder missing")
	}
	if s.Reveal() != raw {
		t.Error("Reveal does not return the value")
	}
}
