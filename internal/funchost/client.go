package funchost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Encoding is how the host puts a Service Bus body into Data.
type Encoding int

// Body encodings observed from the host.
const (
	// BodyObject puts a JSON body in as-is (a JSON object in Data).
	BodyObject Encoding = iota
	// BodyString puts the body in as one JSON string.
	BodyString
	// BodyDoubleString JSON-encodes the body string twice ("\"{…}\""), as
	// the host does for a string-typed message.
	BodyDoubleString
	// BodyBase64 puts the body in as base64, as the host does for bytes
	// (dataType binary).
	BodyBase64
)

// ServiceBusMeta is the broker metadata of a delivered message.
type ServiceBusMeta struct {
	MessageID      string
	DeliveryCount  int
	EnqueuedTime   time.Time
	SequenceNumber int64
	// DeliveryCountAsString sends DeliveryCount as "1", as the host does for
	// every numeric metadata value; false sends a JSON number, as the
	// documentation's examples show.
	DeliveryCountAsString bool
	// ApplicationProperties of the message; a dead-lettered message carries
	// DeadLetterReason and DeadLetterErrorDescription there.
	ApplicationProperties map[string]string
}

// Layouts the host (Newtonsoft.Json) uses for DateTime and DateTimeOffset.
const (
	hostDateTime       = "2006-01-02T15:04:05.9999999"
	hostDateTimeOffset = "2006-01-02T15:04:05.9999999-07:00"
)

// ServiceBusRequest builds the request the host sends for a Service Bus
// trigger named binding (extension 5.x metadata keys): strings serialised
// twice (MessageId "\"id\""), numbers as strings, DateTime without an
// offset, DateTimeOffset with one. Invoke adds Metadata.sys.
func ServiceBusRequest(binding string, body []byte, enc Encoding, meta ServiceBusMeta) Request {
	enq := meta.EnqueuedTime.UTC()
	if meta.EnqueuedTime.IsZero() {
		enq = time.Now().UTC()
	}
	lock := NewGUID()
	deliveryCount := json.RawMessage(strconv.Itoa(meta.DeliveryCount))
	if meta.DeliveryCountAsString {
		deliveryCount = mustJSON(strconv.Itoa(meta.DeliveryCount))
	}
	never := time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)
	md := map[string]json.RawMessage{
		"MessageReceiver":       json.RawMessage(`{}`),
		"MessageSession":        json.RawMessage(`{}`),
		"MessageActions":        json.RawMessage(`{}`),
		"SessionActions":        json.RawMessage(`{}`),
		"ReceiveActions":        json.RawMessage(`{}`),
		"DeliveryCount":         deliveryCount,
		"LockToken":             hostString(lock),
		"ExpiresAtUtc":          mustJSON(never.Format(hostDateTime)),
		"ExpiresAt":             mustJSON(never.Format(hostDateTimeOffset)),
		"EnqueuedTimeUtc":       mustJSON(enq.Format(hostDateTime)),
		"EnqueuedTime":          mustJSON(enq.Format(hostDateTimeOffset)),
		"MessageId":             hostString(meta.MessageID),
		"ContentType":           hostString("application/json"),
		"SequenceNumber":        mustJSON(strconv.FormatInt(meta.SequenceNumber, 10)),
		"ApplicationProperties": json.RawMessage(`{}`),
		"UserProperties":        json.RawMessage(`{}`),
	}
	if len(meta.ApplicationProperties) > 0 {
		props, _ := json.Marshal(meta.ApplicationProperties) // strings only: cannot fail
		md["ApplicationProperties"], md["UserProperties"] = props, props
	}
	return Request{Data: map[string]json.RawMessage{binding: encodeBody(body, enc)}, Metadata: md}
}

// encodeBody renders body in Data as the host would for enc.
func encodeBody(body []byte, enc Encoding) json.RawMessage {
	switch enc {
	case BodyObject:
		if t := bytes.TrimSpace(body); len(t) > 0 && json.Valid(t) {
			return json.RawMessage(clone(t))
		}
		return mustJSON(string(body)) // not JSON: the host could only send a string
	case BodyString:
		return mustJSON(string(body))
	case BodyDoubleString:
		inner, _ := json.Marshal(string(body))
		return mustJSON(string(inner))
	default:
		return mustJSON(base64.StdEncoding.EncodeToString(body))
	}
}

// hostString is how the host writes a string metadata value: the string
// JSON-serialised, then put in a JSON string ("\"value\"").
func hostString(s string) json.RawMessage {
	inner, _ := json.Marshal(s)
	return mustJSON(string(inner))
}

func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s) // marshalling a string cannot fail
	return b
}

// TimerRequest builds the request for a timer trigger named binding firing
// at now. ScheduleStatus is null until a previous run (last) is known.
func TimerRequest(binding string, now time.Time, pastDue bool, last *time.Time) Request {
	type status struct {
		Last, Next, LastUpdated string
	}
	v := struct {
		Schedule       map[string]bool
		ScheduleStatus *status
		IsPastDue      bool
	}{Schedule: map[string]bool{"AdjustForDST": true}, IsPastDue: pastDue}
	if last != nil {
		v.ScheduleStatus = &status{
			Last:        last.UTC().Format(hostDateTimeOffset),
			Next:        now.UTC().Format(hostDateTimeOffset),
			LastUpdated: last.UTC().Format(hostDateTimeOffset),
		}
	}
	b, _ := json.Marshal(v)
	return Request{Data: map[string]json.RawMessage{binding: b}, Metadata: map[string]json.RawMessage{}}
}

// HTTPTriggerRequest builds the request for an HTTP trigger named binding
// with no body (a GET), with the route params and query given.
func HTTPTriggerRequest(binding string, method, rawURL string, params, query map[string]string) Request {
	return NewHTTPTriggerRequest(binding, HTTPRequest{Method: method, URL: rawURL, Params: params, Query: query})
}

// NewHTTPTriggerRequest builds the request for an HTTP trigger named
// binding as the host sends it: the request's Url, Method, Query, Headers
// (each a list of values; Host from the URL when not given), Params and
// Body in Data, and Query, Headers and each route param again in Metadata.
func NewHTTPTriggerRequest(binding string, hr HTTPRequest) Request {
	params, query := hr.Params, hr.Query
	if params == nil {
		params = map[string]string{}
	}
	if query == nil {
		query = map[string]string{}
	}
	headers := make(map[string][]string, len(hr.Headers)+1)
	for k, v := range hr.Headers {
		headers[k] = v
	}
	given := HTTPRequest{Headers: headers}
	if u, err := url.Parse(hr.URL); err == nil && u.Host != "" && given.Header("Host") == "" {
		headers["Host"] = []string{u.Host}
	}
	v := struct {
		URL        string `json:"Url"`
		Method     string
		Query      map[string]string
		Headers    map[string][]string
		Params     map[string]string
		Body       string `json:",omitempty"`
		Identities []any
	}{hr.URL, strings.ToUpper(hr.Method), query, headers, params, hr.Body, []any{}}
	b, _ := json.Marshal(v)
	md := map[string]json.RawMessage{}
	md["Query"], _ = json.Marshal(query)
	md["Headers"], _ = json.Marshal(headers)
	for k, p := range params {
		md[k] = hostString(p)
	}
	return Request{Data: map[string]json.RawMessage{binding: b}, Metadata: md}
}

// Invoke POSTs req to baseURL/function as the host does (with an invocation
// id header, and Metadata.sys filled in when absent) and returns the decoded
// envelope and the HTTP status. Any HTTP answer is returned without error;
// the envelope is nil when a non-2xx body is not one. An error means the
// request could not be made or a 2xx answer was not an envelope. A nil
// client uses a new default client.
func Invoke(ctx context.Context, c *http.Client, baseURL, function string, req Request) (*Response, int, error) {
	if c == nil {
		c = &http.Client{}
	}
	md := make(map[string]json.RawMessage, len(req.Metadata)+1)
	for k, v := range req.Metadata {
		md[k] = v
	}
	if _, ok := md["sys"]; !ok {
		md["sys"], _ = json.Marshal(struct{ MethodName, UtcNow, RandGuid string }{
			function, time.Now().UTC().Format(time.RFC3339Nano), NewGUID(),
		})
	}
	data := req.Data
	if data == nil {
		data = map[string]json.RawMessage{}
	}
	body, err := json.Marshal(Request{Data: data, Metadata: md})
	if err != nil {
		return nil, 0, fmt.Errorf("funchost: encode invocation of %s: %w", function, err)
	}
	target := strings.TrimSuffix(baseURL, "/") + "/" + url.PathEscape(function)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("funchost: invoke %s: %w", function, err)
	}
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	hr.Header.Set(HeaderInvocationID, NewGUID())
	hr.Header.Set(HeaderHostVersion, "4-local")
	hr.Header.Set("User-Agent", "Azure-Functions-Host/4-local")
	res, err := c.Do(hr)
	if err != nil {
		return nil, 0, fmt.Errorf("funchost: invoke %s: %w", function, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(res.Body, MaxRequestBytes+1))
	if err != nil {
		return nil, res.StatusCode, fmt.Errorf("funchost: read answer of %s: %w", function, err)
	}
	var out Response
	decErr := json.Unmarshal(rb, &out)
	if len(rb) > MaxRequestBytes {
		decErr = fmt.Errorf("answer larger than %d bytes", MaxRequestBytes)
	}
	ok := res.StatusCode >= 200 && res.StatusCode < 300
	switch {
	case decErr == nil:
		return &out, res.StatusCode, nil
	case ok:
		return nil, res.StatusCode, fmt.Errorf("funchost: answer of %s (status %d) is not an invocation response: %w", function, res.StatusCode, decErr)
	default:
		return nil, res.StatusCode, nil
	}
}

// WaitReady polls GET baseURL/ until it answers 200 or ctx ends, as the host
// does before the first invocation.
func WaitReady(ctx context.Context, c *http.Client, baseURL string) error {
	if c == nil {
		c = &http.Client{}
	}
	target := strings.TrimSuffix(baseURL, "/") + "/"
	delay := 20 * time.Millisecond
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return fmt.Errorf("funchost: wait for %s: %w", target, err)
		}
		res, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if last == nil || ctx.Err() == nil {
			last = err // keep what the server said over "context deadline exceeded"
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("funchost: %s not ready: %w", target, errors.Join(ctx.Err(), last))
		case <-t.C:
		}
		if delay < 500*time.Millisecond {
			delay *= 2
		}
	}
}

// NewGUID returns a random (version 4) GUID, as the host, Service Bus
// Explorer and Event Grid give invocations, messages and events.
func NewGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
