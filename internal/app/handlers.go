package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/fanout"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/report"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// schedulerHandler runs the Scheduler for a timer firing. The timer binding
// is read tolerantly: without it the firing is at sys.UtcNow (or now) and
// not past due.
func (a *App) schedulerHandler(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	f := fanout.Firing{At: req.Sys().UtcNow}
	if t, err := req.Timer(BindingTimer); err != nil {
		a.log.Warn("timer binding unreadable; treating the firing as on time", "function", FunctionScheduler, "err", err)
	} else {
		f.PastDue = t.IsPastDue
	}
	if f.At.IsZero() {
		f.At = a.now()
	}
	sum, err := a.scheduler.Run(ctx, f)
	if err != nil {
		return nil, err
	}
	return &funchost.Response{Logs: []string{sum.String()}}, nil
}

// workerHandler hands one Service Bus message to the Worker.
func (a *App) workerHandler(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	d := worker.Delivery{MessageID: req.MetaString("MessageId")}
	if n, ok := req.MetaInt("DeliveryCount"); ok {
		d.DeliveryCount = n
	}
	if t, ok := req.MetaTime("EnqueuedTimeUtc"); ok {
		d.EnqueuedAt = t
	}
	body, err := req.Payload(BindingMessage)
	if err != nil {
		// An empty body is recorded as a rejection by the Worker.
		a.log.Warn("message binding unreadable", "function", FunctionWorker, "messageId", d.MessageID, "err", err)
	}
	d.Body = body
	out, err := a.worker.Handle(ctx, d)
	if err != nil {
		return nil, err
	}
	return &funchost.Response{Logs: []string{out.Summary}}, nil
}

// runsHandler answers GET /api/runs/{runId?} with the run's report.
func (a *App) runsHandler(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	h, err := req.HTTP(BindingRequest)
	if err != nil {
		return httpJSON(http.StatusBadRequest, errorBody("unreadable HTTP request: "+err.Error())), nil
	}
	runID := strings.TrimSpace(h.Params["runId"])
	if runID == "latest" {
		runID = ""
	}
	rep, err := report.Build(ctx, a.store, runID)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		what := "run " + runID + " not found"
		if runID == "" {
			what = "no run recorded yet"
		}
		return httpJSON(http.StatusNotFound, errorBody(what)), nil
	case errors.Is(err, checkpoint.ErrInvalid):
		return httpJSON(http.StatusBadRequest, errorBody("invalid run id")), nil
	case err != nil:
		a.log.Error("run report failed", "function", FunctionRuns, "run", runID, "err", err)
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
