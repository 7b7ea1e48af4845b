package runs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/funchost"
)

// Name is the function's name (its folder under functions/); BindingRequest
// and BindingResponse are its HTTP trigger and output binding names.
const (
	Name            = "Runs"
	BindingRequest  = "req"
	BindingResponse = "res"
)

// MaxRunIDLength bounds the run ids the function looks up (and echoes);
// the app's own are at most 18 characters.
const MaxRunIDLength = 64

// Function is the Runs function: GET /api/runs/{runId?} answers the run's
// report as JSON (Report), the latest run when no runId (or "latest") is
// given, plain text with ?format=text; 404 for an unknown run, 400 for an
// invalid run id.
type Function struct {
	Store checkpoint.Store
	// Logger receives failures; nil discards.
	Logger *slog.Logger
}

// Invoke serves one HTTP request sent by the Functions host.
func (f *Function) Invoke(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	h, err := req.HTTP(BindingRequest)
	if err != nil {
		return httpJSON(http.StatusBadRequest, errorBody("unreadable HTTP request: "+err.Error())), nil
	}
	raw := h.Params["runId"]
	runID := strings.TrimSpace(raw)
	switch {
	case raw != "" && runID == "":
		return httpJSON(http.StatusBadRequest, errorBody("blank run id: leave it out (or say \"latest\") for the latest run")), nil
	case len(runID) > MaxRunIDLength:
		return httpJSON(http.StatusBadRequest, errorBody(fmt.Sprintf("invalid run id: longer than %d characters", MaxRunIDLength))), nil
	case runID == "latest":
		runID = ""
	}
	rep, err := Build(ctx, f.Store, runID)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		what := fmt.Sprintf("run %q not found", runID)
		if runID == "" {
			what = "no run recorded yet"
		}
		return httpJSON(http.StatusNotFound, errorBody(what)), nil
	case errors.Is(err, checkpoint.ErrInvalid):
		return httpJSON(http.StatusBadRequest, errorBody("invalid run id")), nil
	case err != nil:
		if f.Logger != nil {
			f.Logger.Error("run report failed", "run", runID, "err", err)
		}
		return httpJSON(http.StatusInternalServerError, errorBody("the report could not be built; see the function logs")), nil
	}
	if strings.EqualFold(h.Query["format"], "text") {
		var buf bytes.Buffer
		if err := rep.WriteText(&buf); err != nil {
			return nil, err
		}
		return httpResponse(http.StatusOK, "text/plain; charset=utf-8", buf.String()), nil
	}
	return httpJSON(http.StatusOK, rep), nil
}

func errorBody(msg string) any { return map[string]string{"error": msg} }

func httpJSON(status int, v any) *funchost.Response {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	return httpResponse(status, "application/json; charset=utf-8", string(b))
}

func httpResponse(status int, contentType, body string) *funchost.Response {
	return &funchost.Response{Outputs: map[string]any{BindingResponse: funchost.HTTPResponse{
		StatusCode: status, Body: body, Headers: map[string]string{"Content-Type": contentType},
	}}}
}
