package funchost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a slog.Handler keeping records for assertions.
type recorder struct {
	mu      sync.Mutex
	records []map[string]any
	attrs   []slog.Attr
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]any{"msg": rec.Message, "level": rec.Level.String()}
	for _, a := range r.attrs {
		m[a.Key] = a.Value.Any()
	}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, m)
	return nil
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{r, append(append([]slog.Attr(nil), r.attrs...), as...)}
}
func (r *recorder) WithGroup(string) slog.Handler { return r }

type recorderView struct {
	root  *recorder
	attrs []slog.Attr
}

func (v *recorderView) Enabled(context.Context, slog.Level) bool { return true }
func (v *recorderView) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(v.attrs...)
	return v.root.Handle(ctx, rec)
}
func (v *recorderView) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{v.root, append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *recorderView) WithGroup(string) slog.Handler { return v }

func (r *recorder) find(outcome string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.records) - 1; i >= 0; i-- {
		if r.records[i]["outcome"] == outcome {
			return r.records[i]
		}
	}
	return nil
}

type seen struct {
	payload       string
	deliveryCount int
	messageID     string
	sys           Sys
	enqueued      time.Time
}

func newTestServer(t *testing.T) (*httptest.Server, *recorder, chan seen) {
	t.Helper()
	rec := &recorder{}
	got := make(chan seen, 16)
	handlers := map[string]Handler{
		"Worker": func(ctx context.Context, req *Request) (*Response, error) {
			p, err := req.Payload("msg")
			if err != nil {
				return nil, err
			}
			dc, _ := req.MetaInt("DeliveryCount")
			enq, _ := req.MetaTime("EnqueuedTimeUtc")
			got <- seen{string(p), dc, req.MetaString("MessageId"), req.Sys(), enq}
			if strings.Contains(string(p), "fail") {
				return nil, errors.New("transient: registry answered 503")
			}
			return &Response{Logs: []string{"purged " + req.MetaString("MessageId")}}, nil
		},
		"Scheduler": func(ctx context.Context, req *Request) (*Response, error) {
			ti, err := req.Timer("timer")
			if err != nil {
				return nil, err
			}
			return &Response{ReturnValue: ti.IsPastDue, Logs: []string{fmt.Sprint(ti.ScheduleStatus != nil)}}, nil
		},
		"Runs": func(ctx context.Context, req *Request) (*Response, error) {
			hr, err := req.HTTP("req")
			if err != nil {
				return nil, err
			}
			body, _ := json.Marshal(map[string]string{"runId": hr.Params["runId"], "format": hr.Query["format"], "method": hr.Method})
			return &Response{Outputs: map[string]any{"res": HTTPResponse{StatusCode: 200, Body: string(body), Headers: map[string]string{"Content-Type": "application/json"}}}}, nil
		},
		"Panics": func(ctx context.Context, req *Request) (*Response, error) {
			panic("handler bug")
		},
		"Nil": func(ctx context.Context, req *Request) (*Response, error) { return nil, nil },
	}
	srv := httptest.NewServer(NewServer(handlers, slog.New(rec)))
	t.Cleanup(srv.Close)
	return srv, rec, got
}

func TestServiceBusOverHTTP(t *testing.T) {
	srv, rec, got := newTestServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := WaitReady(ctx, srv.Client(), srv.URL); err != nil {
		t.Fatal(err)
	}
	enq := time.Date(2025, 3, 5, 2, 0, 1, 123000000, time.UTC)
	for _, enc := range []Encoding{BodyObject, BodyString, BodyDoubleString, BodyBase64} {
		for _, asString := range []bool{false, true} {
			t.Run(fmt.Sprintf("enc%d/string%v", enc, asString), func(t *testing.T) {
				meta := ServiceBusMeta{MessageID: "run-1/3", DeliveryCount: 4, EnqueuedTime: enq, SequenceNumber: 99, DeliveryCountAsString: asString}
				req := ServiceBusRequest("msg", []byte(portalBody), enc, meta)
				resp, status, err := Invoke(ctx, srv.Client(), srv.URL, "Worker", req)
				if err != nil || status != http.StatusOK {
					t.Fatalf("Invoke: %d %v", status, err)
				}
				if len(resp.Logs) != 1 || resp.Logs[0] != "purged run-1/3" || resp.Outputs == nil {
					t.Errorf("response %+v", resp)
				}
				s := <-got
				// An object is re-serialised on the way (compact); strings arrive byte for byte.
				if enc == BodyObject && !sameJSON(t, []byte(s.payload), []byte(portalBody)) || enc != BodyObject && s.payload != portalBody {
					t.Errorf("payload %q", s.payload)
				}
				if s.deliveryCount != 4 || s.messageID != "run-1/3" || !s.enqueued.Equal(enq) {
					t.Errorf("handler saw %+v", s)
				}
				if s.sys.MethodName != "Worker" || s.sys.RandGuid == "" || time.Since(s.sys.UtcNow) > time.Minute {
					t.Errorf("sys %+v", s.sys)
				}
				// The request on the wire has the shapes the host uses.
				raw := req.Metadata["DeliveryCount"]
				if asString != (raw[0] == '"') {
					t.Errorf("DeliveryCount on the wire: %s", raw)
				}
				if string(req.Metadata["MessageId"]) != `"\"run-1/3\""` {
					t.Errorf("MessageId on the wire: %s", req.Metadata["MessageId"])
				}
				if l := rec.find("ok"); l == nil || l["function"] != "Worker" || l["invocationId"] == "" || l["duration"] == nil {
					t.Errorf("log record %v", l)
				}
			})
		}
	}
}

func TestServerFailures(t *testing.T) {
	srv, rec, got := newTestServer(t)
	ctx := t.Context()
	c := srv.Client()

	// A handler error is a 500 whose Logs carry the error: the host fails the invocation.
	resp, status, err := Invoke(ctx, c, srv.URL, "Worker", ServiceBusRequest("msg", []byte(`{"repository":"fail"}`), BodyDoubleString, ServiceBusMeta{MessageID: "m"}))
	<-got
	if err != nil || status != http.StatusInternalServerError || resp == nil || len(resp.Logs) != 1 || !strings.Contains(resp.Logs[0], "registry answered 503") {
		t.Errorf("handler error: %d %+v %v", status, resp, err)
	}
	if l := rec.find("error"); l == nil || !strings.Contains(fmt.Sprint(l["err"]), "503") {
		t.Errorf("error log %v", l)
	}
	// A missing binding is the handler's error too.
	if _, status, _ := Invoke(ctx, c, srv.URL, "Worker", Request{}); status != http.StatusInternalServerError {
		t.Errorf("missing binding: %d", status)
	}
	// Unknown function.
	resp, status, err = Invoke(ctx, c, srv.URL, "Nope", Request{})
	if err != nil || status != http.StatusNotFound || resp == nil || !strings.Contains(resp.Logs[0], `"Nope"`) {
		t.Errorf("unknown function: %d %+v %v", status, resp, err)
	}
	// Function names match case-insensitively.
	if _, status, err := Invoke(ctx, c, srv.URL, "nil", Request{}); err != nil || status != http.StatusOK {
		t.Errorf("case-insensitive: %d %v", status, err)
	}
	// A nil Response encodes as an empty envelope.
	res, err := c.Post(srv.URL+"/Nil", "application/json", strings.NewReader(`{"Data":{},"Metadata":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]json.RawMessage
	_ = json.NewDecoder(res.Body).Decode(&env)
	res.Body.Close()
	if string(env["Outputs"]) != "{}" || string(env["Logs"]) != "[]" || string(env["ReturnValue"]) != "null" {
		t.Errorf("empty envelope %s %s %s", env["Outputs"], env["Logs"], env["ReturnValue"])
	}
	// A panic is a 500, and the server keeps serving.
	if resp, status, err := Invoke(ctx, c, srv.URL, "Panics", Request{}); err != nil || status != http.StatusInternalServerError || !strings.Contains(resp.Logs[0], "panicked") {
		t.Errorf("panic: %d %+v %v", status, resp, err)
	}
	// Malformed JSON, trailing data, wrong method, oversized body.
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodPost, "/Worker", `{"Data":`, http.StatusBadRequest},
		{http.MethodPost, "/Worker", `{"Data":{}} {}`, http.StatusBadRequest},
		{http.MethodPost, "/Worker", `{"Data":[1]}`, http.StatusBadRequest},
		{http.MethodGet, "/Worker", ``, http.StatusMethodNotAllowed},
		{http.MethodPost, "/", `{}`, http.StatusMethodNotAllowed},
		{http.MethodHead, "/", ``, http.StatusOK},
		{http.MethodPost, "/Worker", `{"Data":{"msg":"` + strings.Repeat("a", MaxRequestBytes) + `"}}`, http.StatusRequestEntityTooLarge},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s %s %.30q: %d, want %d", tc.method, tc.path, tc.body, res.StatusCode, tc.want)
		}
	}
	if l := rec.find("malformed"); l == nil {
		t.Error("malformed request not logged")
	}
}

func TestTimerAndHTTPOverHTTP(t *testing.T) {
	srv, _, _ := newTestServer(t)
	ctx := t.Context()
	now := time.Date(2025, 3, 5, 2, 0, 0, 0, time.UTC)
	resp, status, err := Invoke(ctx, srv.Client(), srv.URL, "Scheduler", TimerRequest("timer", now, false, nil))
	if err != nil || status != 200 || resp.ReturnValue != false || resp.Logs[0] != "false" {
		t.Errorf("first timer: %d %+v %v", status, resp, err)
	}
	last := now.Add(-24 * time.Hour)
	req := TimerRequest("timer", now, true, &last)
	resp, status, err = Invoke(ctx, srv.Client(), srv.URL, "Scheduler", req)
	if err != nil || status != 200 || resp.ReturnValue != true || resp.Logs[0] != "true" {
		t.Errorf("past-due timer: %d %+v %v", status, resp, err)
	}
	ti, err := req.Timer("timer")
	if err != nil || !ti.ScheduleStatus.Last.Equal(last) || !ti.ScheduleStatus.Next.Equal(now) {
		t.Errorf("timer request %+v %v", ti, err)
	}

	hreq := HTTPTriggerRequest("req", "get", "http://localhost:7071/api/runs/r-1?format=json", map[string]string{"runId": "r-1"}, map[string]string{"format": "json"})
	resp, status, err = Invoke(ctx, srv.Client(), srv.URL, "Runs", hreq)
	if err != nil || status != 200 {
		t.Fatalf("http: %d %v", status, err)
	}
	out, _ := json.Marshal(resp.Outputs["res"])
	var res HTTPResponse
	if err := json.Unmarshal(out, &res); err != nil || res.StatusCode != 200 || res.Body != `{"format":"json","method":"GET","runId":"r-1"}` || res.Headers["Content-Type"] != "application/json" {
		t.Errorf("res = %s", out)
	}
	if hr, _ := hreq.HTTP("req"); hr.Headers["Host"][0] != "localhost:7071" {
		t.Errorf("Host header %v", hr.Headers)
	}
}

func TestInvokeAgainstNonEnvelopes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderInvocationID) == "" || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		switch r.URL.Path {
		case "/Text":
			_, _ = w.Write([]byte("ok"))
		case "/Fail":
			http.Error(w, "boom", http.StatusBadGateway)
		case "/Big":
			_, _ = w.Write(bytes.Repeat([]byte(" "), MaxRequestBytes+10))
		}
	}))
	defer srv.Close()
	if _, status, err := Invoke(t.Context(), nil, srv.URL, "Text", Request{}); err == nil || status != 200 {
		t.Errorf("2xx non-envelope: %d %v", status, err)
	}
	if resp, status, err := Invoke(t.Context(), nil, srv.URL, "Fail", Request{}); err != nil || status != http.StatusBadGateway || resp != nil {
		t.Errorf("502: %d %+v %v", status, resp, err)
	}
	if _, _, err := Invoke(t.Context(), nil, srv.URL, "Big", Request{}); err == nil {
		t.Error("oversized answer accepted")
	}
	if _, _, err := Invoke(t.Context(), nil, "http://127.0.0.1:1", "X", Request{}); err == nil {
		t.Error("unreachable host: no error")
	}
}

func TestWaitReady(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitReady(ctx, srv.Client(), srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if calls != 3 {
		t.Errorf("calls = %d", calls)
	}
	mu.Unlock()

	// Never ready: ctx ends and the error says why.
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer dead.Close()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel2()
	err := WaitReady(ctx2, dead.Client(), dead.URL)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("never ready: %v", err)
	}
}

func TestGUID(t *testing.T) {
	a, b := NewGUID(), NewGUID()
	if a == b || len(a) != 36 || a[14] != '4' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("guids %s %s", a, b)
	}
}
