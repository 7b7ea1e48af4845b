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
// given, plain text with ?format=text, an HTML page with ?format=html or
// when the client asks for text/html (a browser); with HTML and no runId
// it answers the list of recent runs. 404 for an unknown run, 400 for an
// invalid run id or an unknown format.
type Function struct {
	Store checkpoint.Store
	// Report tunes the reports (stall detection); zero values take defaults.
	Report Options
	// Logger receives failures; nil discards.
	Logger *slog.Logger
}

// Invoke serves one HTTP request sent by the Functions host.
func (f *Function) Invoke(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	h, err := req.HTTP(BindingRequest)
	if err != nil {
		return httpJSON(http.StatusBadRequest, errorBody("unreadable HTTP request: "+err.Error())), nil
	}
	format, err := negotiate(h)
	if err != nil {
		return httpJSON(http.StatusBadRequest, errorBody(err.Error())), nil
	}
	raw := h.Params["runId"]
	runID := strings.TrimSpace(raw)
	switch {
	case raw != "" && runID == "":
		return httpJSON(http.StatusBadRequest, errorBody("blank run id: leave it out (or say \"latest\") for the latest run")), nil
	case len(runID) > MaxRunIDLength:
		return httpJSON(http.StatusBadRequest, errorBody(fmt.Sprintf("invalid run id: longer than %d characters", MaxRunIDLength))), nil
	}
	if format == formatHTML {
		return f.page(ctx, h, runID), nil
	}
	if runID == "latest" {
		runID = ""
	}
	rep, err := BuildWith(ctx, f.Store, runID, f.Report)
	if status, msg := f.failure(err, runID); status != 0 {
		return httpJSON(status, errorBody(msg)), nil
	}
	if format == formatText {
		var buf bytes.Buffer
		if err := rep.WriteText(&buf); err != nil {
			return nil, err
		}
		return httpResponse(http.StatusOK, "text/plain; charset=utf-8", buf.String()), nil
	}
	return httpJSON(http.StatusOK, rep), nil
}

// failure maps an error of Build to an HTTP status and message; status 0
// for no error.
func (f *Function) failure(err error, runID string) (int, string) {
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, checkpoint.ErrNotFound):
		if runID == "" {
			return http.StatusNotFound, "no run recorded yet"
		}
		return http.StatusNotFound, fmt.Sprintf("run %q not found", runID)
	case errors.Is(err, checkpoint.ErrInvalid):
		return http.StatusBadRequest, "invalid run id"
	default:
		if f.Logger != nil {
			f.Logger.Error("run report failed", "run", runID, "err", err)
		}
		return http.StatusInternalServerError, "the report could not be built; see the function logs"
	}
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
