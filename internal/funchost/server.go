package funchost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Header names the host sets on every invocation.
const (
	HeaderInvocationID = "X-Azure-Functions-InvocationId"
	HeaderHostVersion  = "X-Azure-Functions-HostVersion"
)

// MaxRequestBytes bounds an invocation body.
const MaxRequestBytes = 4 << 20

// Handler handles one invocation. A nil error answers 200 with the Response;
// an error answers 500 with a Response carrying the error in Logs, so the
// host records a failure (and Service Bus redelivers the message).
type Handler func(ctx context.Context, req *Request) (*Response, error)

// NewServer routes POST /{FunctionName} to handlers[FunctionName] (404 when
// unknown; exact name first, then case-insensitively, as function names are),
// answers GET / with 200 for the host's start-up probe, limits bodies to
// MaxRequestBytes, answers malformed JSON with 400, and logs every
// invocation (function, invocation id, duration, outcome). A nil logger
// discards.
func NewServer(handlers map[string]Handler, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &server{handlers: make(map[string]Handler, len(handlers)), folded: make(map[string]Handler, len(handlers)), logger: logger}
	for name, h := range handlers {
		s.handlers[name] = h
		s.folded[strings.ToLower(name)] = h
	}
	return s
}

type server struct {
	handlers map[string]Handler
	folded   map[string]Handler
	logger   *slog.Logger
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		writeJSON(w, http.StatusMethodNotAllowed, failure("only GET is served at /"))
		return
	}
	h, ok := s.handlers[name]
	if !ok {
		h, ok = s.folded[strings.ToLower(name)]
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, failure(fmt.Sprintf("no function named %q", name)))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, failure("functions are invoked with POST"))
		return
	}
	s.invoke(w, r, name, h)
}

func (s *server) invoke(w http.ResponseWriter, r *http.Request, name string, h Handler) {
	start := time.Now()
	ctx := r.Context()
	log := s.logger.With("function", name, "invocationId", r.Header.Get(HeaderInvocationID))

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			log.WarnContext(ctx, "invocation rejected", "outcome", "too large", "status", http.StatusRequestEntityTooLarge)
			writeJSON(w, http.StatusRequestEntityTooLarge, failure(fmt.Sprintf("request body larger than %d bytes", MaxRequestBytes)))
			return
		}
		log.WarnContext(ctx, "invocation body unreadable", "err", err)
		writeJSON(w, http.StatusBadRequest, failure("request body unreadable: "+err.Error()))
		return
	}
	req, err := parseRequest(body)
	if err != nil {
		log.WarnContext(ctx, "invocation rejected", "outcome", "malformed", "status", http.StatusBadRequest, "err", err)
		writeJSON(w, http.StatusBadRequest, failure("malformed invocation request: "+err.Error()))
		return
	}

	resp, err := callHandler(ctx, h, req)
	status := http.StatusOK
	if err != nil {
		status = http.StatusInternalServerError
		resp = failure(err.Error())
		log.ErrorContext(ctx, "invocation failed", "outcome", "error", "status", status, "duration", time.Since(start), "err", err)
	} else {
		log.InfoContext(ctx, "invocation done", "outcome", "ok", "status", status, "duration", time.Since(start))
	}
	writeJSON(w, status, resp.normalize())
}

// callHandler runs h, turning a panic into an error so that one bad
// invocation answers 500 instead of killing the handler process.
func callHandler(ctx context.Context, h Handler, req *Request) (resp *Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("funchost: handler panicked: %v", p)
		}
	}()
	return h(ctx, req)
}

func parseRequest(body []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	if req.Data == nil {
		req.Data = map[string]json.RawMessage{}
	}
	if req.Metadata == nil {
		req.Metadata = map[string]json.RawMessage{}
	}
	return &req, nil
}

func failure(msg string) *Response { return (&Response{Logs: []string{msg}}).normalize() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// An Output that cannot be encoded is the handler's failure.
		status = http.StatusInternalServerError
		b, _ = json.Marshal(failure("encode response: " + err.Error()))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
