package localstack

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// Invocation is one call the host stand-in made to the handler.
type Invocation struct {
	Function string // app.FunctionScheduler or app.FunctionWorker
	// MessageID of a Worker invocation.
	MessageID string
	// DeliveryCount is the message's delivery count (Worker), or the
	// attempt at firing the timer, 1 being the first (Scheduler).
	DeliveryCount int
	// Status is the HTTP status the handler answered (0: no answer).
	Status int
	// Summary is the handler's first invocation log line, or the failure.
	Summary  string
	Duration time.Duration
	// Redelivered: the invocation failed and will be made again (the
	// message delivered again, the timer retried); DeadLettered: a message
	// failed on its last delivery.
	Redelivered, DeadLettered bool
}

// OK reports whether the handler answered with a 2xx status.
func (v Invocation) OK() bool { return v.Status >= 200 && v.Status < 300 }

// host stands in for the Functions host: it invokes the handler at base
// over the custom-handler protocol and drives the queue's deliveries.
type host struct {
	base          string
	client        *http.Client
	q             *memQueue
	now           func() time.Time
	maxCalls      int           // host.json serviceBus.maxConcurrentCalls
	maxDeliveries int           // the queue's maxDeliveryCount (PURGE_MAX_DELIVERIES)
	backoff       time.Duration // before a redelivery, times the delivery count
	onInvocation  func(Invocation)

	mu          sync.Mutex
	invocations []Invocation
}

// record keeps an invocation and reports it.
func (h *host) record(v Invocation) {
	h.mu.Lock()
	h.invocations = append(h.invocations, v)
	h.mu.Unlock()
	if h.onInvocation != nil {
		h.onInvocation(v)
	}
}

// sys is Metadata.sys as the host sends it.
func sys(function string, at time.Time) json.RawMessage {
	b, _ := json.Marshal(map[string]string{ // strings only: cannot fail
		"MethodName": function, "UtcNow": at.UTC().Format(time.RFC3339Nano), "RandGuid": newGUID(),
	})
	return b
}

// TimerRetries is how often a failed timer invocation is retried
// (functions/Scheduler/function.json: fixedDelay, maxRetryCount 2; the
// host waits a minute, the stand-in only the redelivery backoff).
const TimerRetries = 2

// fireTimer invokes the Scheduler as the timer trigger does at at, retrying
// a failure as the function's retry policy says.
func (h *host) fireTimer(ctx context.Context, at time.Time) {
	for attempt := 0; ; attempt++ {
		req := funchost.TimerRequest(app.BindingTimer, at, false, nil)
		req.Metadata["sys"] = sys(app.FunctionScheduler, h.now())
		v := h.invoke(ctx, app.FunctionScheduler, req)
		v.DeliveryCount = attempt + 1
		ok := v.OK() || ctx.Err() != nil || attempt >= TimerRetries
		v.Redelivered = !ok
		h.record(v)
		if ok || sleep(ctx, h.backoff) != nil {
			return
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// invoke calls function and summarises the answer.
func (h *host) invoke(ctx context.Context, function string, req funchost.Request) Invocation {
	start := time.Now()
	resp, status, err := funchost.Invoke(ctx, h.client, h.base, function, req)
	v := Invocation{Function: function, Status: status, Duration: time.Since(start)}
	switch {
	case err != nil:
		v.Summary = err.Error()
	case resp != nil && len(resp.Logs) > 0:
		v.Summary = resp.Logs[0]
	case !v.OK():
		v.Summary = fmt.Sprintf("HTTP %d", status)
	}
	return v
}

// deliver invokes the Worker with m, as the Service Bus trigger does, and
// settles the message: complete on success; otherwise abandon (delivered
// again after a backoff) or, on the last delivery, dead-letter.
func (h *host) deliver(ctx context.Context, m *message) {
	m.deliveries++
	req := funchost.ServiceBusRequest(app.BindingMessage, m.body, funchost.BodyDoubleString, funchost.ServiceBusMeta{
		MessageID: m.id, DeliveryCount: m.deliveries, EnqueuedTime: m.enqueued,
		SequenceNumber: m.seq, DeliveryCountAsString: true,
	})
	req.Metadata["sys"] = sys(app.FunctionWorker, h.now())
	v := h.invoke(ctx, app.FunctionWorker, req)
	v.MessageID, v.DeliveryCount = m.id, m.deliveries
	switch {
	case v.OK():
		h.q.complete(m)
	case ctx.Err() != nil:
		// Shutting down: the lock would expire and Service Bus deliver the
		// message again later; nothing more happens here.
		h.q.release(m)
	default:
		m.lastError = v.Summary
		v.DeadLettered = m.deliveries >= h.maxDeliveries
		v.Redelivered = !v.DeadLettered
		h.q.abandon(m, time.Duration(m.deliveries)*h.backoff, v.DeadLettered)
	}
	h.record(v)
}

// drain delivers messages, up to maxCalls at a time, until the queue is
// empty and no delivery is in flight (deliveries may send more messages:
// continuations, re-fan-outs). It returns early only when ctx ends.
func (h *host) drain(ctx context.Context) error {
	slots := make(chan struct{}, h.maxCalls)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("deliver messages: %w", ctx.Err())
		}
		m, wait, drained := h.q.take()
		if m != nil {
			wg.Go(func() {
				defer func() { <-slots }()
				h.deliver(ctx, m)
			})
			continue
		}
		<-slots
		if drained {
			return nil
		}
		if err := h.waitForWork(ctx, wait); err != nil {
			return err
		}
	}
}

// waitForWork waits until the queue signals (a message arrived, a delivery
// ended) or, when wait > 0, until a redelivery becomes visible.
func (h *host) waitForWork(ctx context.Context, wait time.Duration) error {
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-h.q.wake:
	case <-timer:
	case <-ctx.Done():
		return fmt.Errorf("deliver messages: %w", ctx.Err())
	}
	return nil
}

// newGUID returns a random version 4 UUID, as Service Bus Explorer and
// Event Grid give messages and events.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// EventTopic is the Event Grid topic (the registry's resource ID) named by
// the demo's ImagePushed events.
const EventTopic = "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/acrpurge-local" +
	"/providers/Microsoft.ContainerRegistry/registries/local"

// pushEvent renders the ImagePushed event of a push of repo:tag (digest,
// mediaType, size) to the registry host, as the registry's Event Grid
// subscription delivers it to a Service Bus queue: in the Event Grid
// schema, or CloudEvents 1.0.
func pushEvent(cloudEvents bool, id, host, repo, tag, digest, mediaType string, size int64, at time.Time) []byte {
	data := map[string]any{
		"id": newGUID(), "timestamp": at.UTC().Format(time.RFC3339Nano), "action": "push", "location": "local",
		"target": map[string]any{
			"mediaType": mediaType, "size": size, "digest": digest, "length": size,
			"repository": repo, "tag": tag,
		},
		"request": map[string]any{
			"id": newGUID(), "host": host, "method": "PUT", "useragent": "acrpurge-local",
		},
	}
	subject := repo + ":" + tag
	var ev map[string]any
	if cloudEvents {
		ev = map[string]any{
			"specversion": "1.0", "id": id, "source": EventTopic, "subject": subject,
			"type": queue.EventTypeImagePushed, "time": at.UTC().Format(time.RFC3339Nano),
			"datacontenttype": "application/json", "data": data,
		}
	} else {
		ev = map[string]any{
			"id": id, "topic": EventTopic, "subject": subject, "eventType": queue.EventTypeImagePushed,
			"eventTime": at.UTC().Format(time.RFC3339Nano), "data": data, "dataVersion": "1.0", "metadataVersion": "1",
		}
	}
	b, _ := json.Marshal(ev) // maps of strings and numbers: cannot fail
	return b
}

// splitRef splits "repo:tag" at the last colon.
func splitRef(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndexByte(ref, ':')
	if i <= 0 || i == len(ref)-1 {
		return "", "", false
	}
	return ref[:i], ref[i+1:], true
}
