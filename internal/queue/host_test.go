package queue_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// TestDecodeThroughHost sends every fixture through the custom-handler
// protocol in every encoding the host uses, and decodes it in the handler as
// the Worker does.
func TestDecodeThroughHost(t *testing.T) {
	worker := func(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
		body, err := req.Payload("msg")
		if err != nil {
			return nil, err
		}
		dc, _ := req.MetaInt("DeliveryCount")
		d, err := queue.Decode(body)
		if queue.IsReject(err) {
			// Permanent: recorded and completed, never retried.
			return &funchost.Response{Logs: []string{"rejected: " + err.Error()}}, nil
		}
		if err != nil {
			return nil, err
		}
		return &funchost.Response{Logs: []string{fmt.Sprintf("%s %s dry=%v delivery=%d", d.Kind, strings.Join(d.Repositories, ","), d.DryRun, dc)}}, nil
	}
	srv := httptest.NewServer(funchost.NewServer(map[string]funchost.Handler{"Worker": worker}, nil))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := funchost.WaitReady(ctx, srv.Client(), srv.URL); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ file, want string }{
		{"eventgrid-imagepushed.json", "event team-a/api dry=false"},
		{"cloudevents-imagepushed.json", "event team-a/api dry=false"},
		{"eventgrid-imagedeleted.json", "ignored  dry=false"},
		{"portal-servicebus-explorer.json", "portal team-a/api,team-b/worker dry=true"},
		{"own-continuation.json", "own team-a/api,team-a/web,tools/ci/runner dry=false"},
	}
	for _, tt := range tests {
		body, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range []funchost.Encoding{funchost.BodyObject, funchost.BodyString, funchost.BodyDoubleString, funchost.BodyBase64} {
			for dc, asString := range []bool{false, true} {
				req := funchost.ServiceBusRequest("msg", body, enc, funchost.ServiceBusMeta{MessageID: tt.file, DeliveryCount: dc + 1, DeliveryCountAsString: asString})
				resp, status, err := funchost.Invoke(ctx, srv.Client(), srv.URL, "Worker", req)
				if err != nil || status != http.StatusOK {
					t.Fatalf("%s enc %d: %d %v", tt.file, enc, status, err)
				}
				want := fmt.Sprintf("%s delivery=%d", tt.want, dc+1)
				if len(resp.Logs) != 1 || resp.Logs[0] != want {
					t.Errorf("%s enc %d: %q, want %q", tt.file, enc, resp.Logs, want)
				}
			}
		}
	}
	// A message naming a registry is completed as rejected, with the reason.
	req := funchost.ServiceBusRequest("msg", []byte(`{"repositories":["team-a/api"],"loginServer":"evil.azurecr.io"}`), funchost.BodyDoubleString, funchost.ServiceBusMeta{MessageID: "x", DeliveryCount: 1})
	resp, status, err := funchost.Invoke(ctx, srv.Client(), srv.URL, "Worker", req)
	if err != nil || status != http.StatusOK || !strings.Contains(resp.Logs[0], `field "loginServer" is not allowed`) {
		t.Errorf("registry in message: %d %v %v", status, resp, err)
	}
}
