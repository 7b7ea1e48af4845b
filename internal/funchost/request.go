package funchost

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Request is the invocation payload the host POSTs to /{FunctionName}.
type Request struct {
	// Data holds trigger and input bindings by binding name.
	Data map[string]json.RawMessage `json:"Data"`
	// Metadata holds trigger metadata (DeliveryCount, MessageId, …) and "sys".
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// maxUnwrap bounds how many layers of string encoding Payload removes.
const maxUnwrap = 4

// Payload returns the content of a binding as bytes, tolerantly: a JSON
// object or array as-is; a JSON string unquoted, and again while the result
// is itself a JSON string (double encoding); a string holding base64 of JSON
// (a bytes binding) decoded. Other scalars are returned as their JSON text.
// A missing or null binding is an error naming it.
func (r *Request) Payload(binding string) ([]byte, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return nil, fmt.Errorf("funchost: binding %q is missing from Data", binding)
	}
	cur := bytes.TrimSpace(raw)
	if len(cur) == 0 || string(cur) == "null" {
		return nil, fmt.Errorf("funchost: binding %q is null", binding)
	}
	inString := false
	for range maxUnwrap {
		t := bytes.TrimSpace(cur)
		if len(t) == 0 {
			if inString {
				return []byte{}, nil
			}
			return nil, fmt.Errorf("funchost: binding %q is empty", binding)
		}
		switch t[0] {
		case '{', '[':
			return clone(t), nil
		case '"':
			var s string
			if err := json.Unmarshal(t, &s); err != nil {
				// Text that merely starts with a quote.
				return clone(cur), nil
			}
			cur, inString = []byte(s), true
			continue
		}
		if !inString {
			return clone(t), nil // a number or boolean
		}
		if dec, ok := base64JSON(t); ok {
			cur = dec
			continue
		}
		return clone(cur), nil // plain text
	}
	return clone(cur), nil
}

// base64JSON decodes s when it is standard base64 of a JSON object, array or
// string.
func base64JSON(s []byte) ([]byte, bool) {
	if len(s)%4 != 0 {
		return nil, false
	}
	dec, err := base64.StdEncoding.DecodeString(string(s))
	if err != nil {
		return nil, false
	}
	t := bytes.TrimSpace(bytes.TrimPrefix(dec, []byte("\xef\xbb\xbf")))
	if len(t) == 0 || (t[0] != '{' && t[0] != '[' && t[0] != '"') || !json.Valid(t) {
		return nil, false
	}
	return t, true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// MetaString renders a metadata value as a string: a string unquoted (and
// unquoted again when the host serialised it twice, as it does for
// MessageId and ContentType), a number or boolean as its JSON text, an object
// or array as compact JSON. Missing or null is "".
func (r *Request) MetaString(key string) string {
	return renderScalar(r.Metadata[key])
}

func renderScalar(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return ""
	}
	if t[0] != '"' {
		if t[0] == '{' || t[0] == '[' {
			var buf bytes.Buffer
			if json.Compact(&buf, t) == nil {
				return buf.String()
			}
		}
		return string(t)
	}
	var s string
	if json.Unmarshal(t, &s) != nil {
		return string(t)
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		var inner string
		if json.Unmarshal([]byte(s), &inner) == nil {
			return inner
		}
	}
	return s
}

// MetaInt reads an integer metadata value given as a number or as a numeric
// string (the host sends DeliveryCount as "1").
func (r *Request) MetaInt(key string) (int, bool) {
	s := strings.TrimSpace(r.MetaString(key))
	if s == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return 0, false
	}
	return int(f), true
}

// MetaTime reads a time metadata value such as EnqueuedTimeUtc. The host
// writes these with or without an offset ("2023-10-12T20:13:49" or
// "…+00:00"); a time without one is UTC.
func (r *Request) MetaTime(key string) (time.Time, bool) {
	return parseHostTime(r.MetaString(key))
}

// Sys is Metadata.sys.
type Sys struct {
	MethodName string    // the function name
	UtcNow     time.Time // when the host built the invocation
	RandGuid   string    // a random GUID per invocation
}

// Sys returns Metadata.sys; absent or unreadable fields are zero.
func (r *Request) Sys() Sys {
	raw := bytes.TrimSpace(r.Metadata["sys"])
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			raw = []byte(s)
		}
	}
	var v struct {
		MethodName json.RawMessage
		UtcNow     json.RawMessage
		RandGuid   json.RawMessage
	}
	if json.Unmarshal(raw, &v) != nil {
		return Sys{}
	}
	now, _ := parseHostTime(renderScalar(v.UtcNow))
	return Sys{MethodName: renderScalar(v.MethodName), UtcNow: now, RandGuid: renderScalar(v.RandGuid)}
}

// TimerInfo is a timer trigger binding.
type TimerInfo struct {
	Schedule       map[string]any  // e.g. {"AdjustForDST": true}
	ScheduleStatus *ScheduleStatus // nil before the first recorded run
	IsPastDue      bool
}

// ScheduleStatus is the timer's recorded schedule status.
type ScheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

// Timer decodes a timer trigger binding.
func (r *Request) Timer(binding string) (TimerInfo, error) {
	p, err := r.Payload(binding)
	if err != nil {
		return TimerInfo{}, err
	}
	var v struct {
		Schedule       map[string]any
		ScheduleStatus *struct{ Last, Next, LastUpdated json.RawMessage }
		IsPastDue      json.RawMessage
	}
	if err := json.Unmarshal(p, &v); err != nil {
		return TimerInfo{}, fmt.Errorf("funchost: timer binding %q: %w", binding, err)
	}
	ti := TimerInfo{Schedule: v.Schedule}
	switch strings.ToLower(renderScalar(v.IsPastDue)) {
	case "", "false":
	case "true":
		ti.IsPastDue = true
	default:
		return TimerInfo{}, fmt.Errorf("funchost: timer binding %q: IsPastDue is not a boolean", binding)
	}
	if st := v.ScheduleStatus; st != nil {
		ti.ScheduleStatus = &ScheduleStatus{}
		for _, f := range []struct {
			raw json.RawMessage
			dst *time.Time
		}{{st.Last, &ti.ScheduleStatus.Last}, {st.Next, &ti.ScheduleStatus.Next}, {st.LastUpdated, &ti.ScheduleStatus.LastUpdated}} {
			s := renderScalar(f.raw)
			if s == "" {
				continue
			}
			t, ok := parseHostTime(s)
			if !ok {
				return TimerInfo{}, fmt.Errorf("funchost: timer binding %q: time %q is not readable", binding, s)
			}
			*f.dst = t
		}
	}
	return ti, nil
}

// HTTPRequest is an HTTP trigger binding.
type HTTPRequest struct {
	URL, Method string
	Query       map[string]string
	Headers     map[string][]string
	Params      map[string]string
	Body        string
}

// HTTP decodes an HTTP trigger binding: {"Url","Method","Query","Headers",
// "Params","Body"}. Query may also arrive as a JSON-encoded string; a header
// may be a string or an array of strings.
func (r *Request) HTTP(binding string) (HTTPRequest, error) {
	p, err := r.Payload(binding)
	if err != nil {
		return HTTPRequest{}, err
	}
	var v struct {
		URL     string `json:"Url"`
		Method  string
		Query   json.RawMessage
		Headers map[string]json.RawMessage
		Params  json.RawMessage
		Body    json.RawMessage
	}
	if err := json.Unmarshal(p, &v); err != nil {
		return HTTPRequest{}, fmt.Errorf("funchost: http binding %q: %w", binding, err)
	}
	hr := HTTPRequest{URL: v.URL, Method: v.Method}
	if hr.Query, err = stringMap(v.Query); err != nil {
		return HTTPRequest{}, fmt.Errorf("funchost: http binding %q: Query: %w", binding, err)
	}
	if hr.Params, err = stringMap(v.Params); err != nil {
		return HTTPRequest{}, fmt.Errorf("funchost: http binding %q: Params: %w", binding, err)
	}
	if len(v.Headers) > 0 {
		hr.Headers = make(map[string][]string, len(v.Headers))
		for k, raw := range v.Headers {
			var list []string
			if json.Unmarshal(raw, &list) != nil {
				list = []string{renderScalar(raw)}
			}
			hr.Headers[k] = list
		}
	}
	hr.Body = renderScalar(v.Body)
	return hr, nil
}

// Header returns the values of the named request header joined by ", ",
// matching the name without regard to case (the host passes header names
// as the client sent them); "" when absent.
func (h HTTPRequest) Header(name string) string {
	var vals []string
	for k, v := range h.Headers {
		if strings.EqualFold(k, name) {
			vals = append(vals, v...)
		}
	}
	return strings.Join(vals, ", ")
}

// stringMap reads {"k":"v"} given as an object or as a JSON string holding
// one; values are rendered with renderScalar.
func stringMap(raw json.RawMessage) (map[string]string, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return nil, err
		}
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		t = []byte(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = renderScalar(v)
	}
	return out, nil
}

// parseHostTime reads the time formats the host emits: RFC 3339 with up to
// seven fractional digits, or the same without an offset (UTC).
func parseHostTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}
