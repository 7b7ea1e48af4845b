// Package hostdriver is the one stand-in for the Azure Functions host,
// shared by `handler local`, the end-to-end tests and the chaos suite. It
// speaks the real custom-handler protocol (internal/funchost) to the app's
// HTTP server: it fires the Scheduler's timer, delivers Service Bus
// messages from a fakebus.Queue to the Worker and settles them as the
// Service Bus trigger does (complete on 2xx; otherwise abandon, and
// dead-letter on the last delivery), hands the dead-letter queue to the
// DeadLetters function when the app has one, and asks the Runs function for
// reports.
//
// It is test and demo support: no production package imports it.
package hostdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/deadletters"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/runs"
	"github.com/acrpurge/acrpurge/internal/scheduler"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// TimerRetries is how often a failed timer invocation is retried
// (functions/Scheduler/function.json: fixedDelay, maxRetryCount 2; the host
// waits a minute, the driver only Backoff).
const TimerRetries = 2

// Invocation is one call the driver made to the handler.
type Invocation struct {
	Function string // scheduler.Name, worker.Name, runs.Name
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
	// Response is the handler's answer, nil without one; Err the transport
	// failure, if any.
	Response *funchost.Response
	Err      error
}

// OK reports whether the handler answered with a 2xx status.
func (v Invocation) OK() bool { return v.Status >= 200 && v.Status < 300 }

// Driver drives one app. Base is read on every invocation, so the app
// instance behind it may be replaced (a restarted process).
type Driver struct {
	// Base returns the URL of the app's custom-handler server (required).
	Base func() string
	// Queue is the Service Bus queue the Worker is triggered from (required
	// for deliveries).
	Queue *fakebus.Queue
	// Client defaults to a plain client without timeout.
	Client *http.Client
	// Encoding of message bodies; nil: funchost.BodyDoubleString, as the
	// host sends a string-typed message. (A pointer, because the zero
	// Encoding, BodyObject, is one the tests ask for too.)
	Encoding *funchost.Encoding
	// Backoff before a failed message becomes visible again, times its
	// delivery count; also the wait before a timer retry.
	Backoff time.Duration
	// MaxCalls is how many messages Drain delivers at once
	// (host.json serviceBus.maxConcurrentCalls); default 1.
	MaxCalls int
	// MaxInvocations bounds the deliveries of one Drain; 0 = no bound.
	MaxInvocations int
	// StrictAnswers makes Drain fail when a delivery gets no HTTP answer
	// (tests), instead of treating it as a failed delivery (the demo).
	StrictAnswers bool
	// Now stamps Metadata.sys.UtcNow; default time.Now.
	Now func() time.Time
	// OnInvocation, if set, sees every invocation as it ends.
	OnInvocation func(Invocation)
	// DeadLetters makes Drain hand every dead-lettered message to the
	// DeadLetters function (its trigger on the dead-letter sub-queue), as
	// the deployed app does.
	DeadLetters bool

	mu          sync.Mutex
	invocations []Invocation
	dlqHanded   int // dead letters handed to the DeadLetters function
}

func (d *Driver) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// record keeps an invocation and reports it.
func (d *Driver) record(v Invocation) {
	d.mu.Lock()
	d.invocations = append(d.invocations, v)
	d.mu.Unlock()
	if d.OnInvocation != nil {
		d.OnInvocation(v)
	}
}

// Invocations returns every invocation so far, in the order they ended.
func (d *Driver) Invocations() []Invocation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Invocation(nil), d.invocations...)
}

// sys is Metadata.sys as the host sends it.
func sys(function string, at time.Time) json.RawMessage {
	b, _ := json.Marshal(map[string]string{ // strings only: cannot fail
		"MethodName": function, "UtcNow": at.UTC().Format(time.RFC3339Nano), "RandGuid": funchost.NewGUID(),
	})
	return b
}

// invoke calls function and summarises the answer. Metadata.sys is added
// unless req has it.
func (d *Driver) invoke(ctx context.Context, function string, req funchost.Request) Invocation {
	if _, ok := req.Metadata["sys"]; !ok {
		req.Metadata["sys"] = sys(function, d.now())
	}
	start := time.Now()
	resp, status, err := funchost.Invoke(ctx, d.Client, d.Base(), function, req)
	v := Invocation{Function: function, Status: status, Duration: time.Since(start), Response: resp, Err: err}
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

// Timer invokes the Scheduler once, as the timer trigger does at at, and
// returns the invocation without recording it.
// Metadata.sys.UtcNow is at: the host fires the timer then.
func (d *Driver) Timer(ctx context.Context, at time.Time, pastDue bool) Invocation {
	req := funchost.TimerRequest(scheduler.BindingTimer, at, pastDue, nil)
	req.Metadata["sys"] = sys(scheduler.Name, at)
	return d.invoke(ctx, scheduler.Name, req)
}

// FireTimer invokes the Scheduler as the timer trigger does at at,
// retrying a failure as the function's retry policy says, and returns the
// last invocation.
func (d *Driver) FireTimer(ctx context.Context, at time.Time, pastDue bool) Invocation {
	for attempt := 0; ; attempt++ {
		v := d.Timer(ctx, at, pastDue)
		v.DeliveryCount = attempt + 1
		ok := v.OK() || ctx.Err() != nil || attempt >= TimerRetries
		v.Redelivered = !ok
		d.record(v)
		if ok || sleep(ctx, d.Backoff) != nil {
			return v
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

// Invoke invokes the Worker with a received message, as the Service Bus
// trigger does, without settling it (tests that kill an instance mid-call
// settle it themselves). enc overrides Encoding when not nil.
func (d *Driver) Invoke(ctx context.Context, m *fakebus.Message, enc *funchost.Encoding) Invocation {
	e := funchost.BodyDoubleString
	switch {
	case enc != nil:
		e = *enc
	case d.Encoding != nil:
		e = *d.Encoding
	}
	req := funchost.ServiceBusRequest(worker.BindingMessage, m.Body, e, funchost.ServiceBusMeta{
		MessageID: m.ID, DeliveryCount: m.DeliveryCount, EnqueuedTime: m.EnqueuedAt,
		SequenceNumber: m.Seq, DeliveryCountAsString: true,
	})
	v := d.invoke(ctx, worker.Name, req)
	v.MessageID, v.DeliveryCount = m.ID, m.DeliveryCount
	return v
}

// Deliver invokes the Worker with a received message and settles it:
// complete on success; otherwise abandon (delivered again after Backoff ×
// its delivery count) or, on the last delivery, dead-letter. When ctx has
// ended (shutting down) the message is released: its lock would expire.
func (d *Driver) Deliver(ctx context.Context, m *fakebus.Message) Invocation {
	v := d.Invoke(ctx, m, nil)
	d.settle(ctx, m, &v)
	d.record(v)
	return v
}

func (d *Driver) settle(ctx context.Context, m *fakebus.Message, v *Invocation) {
	switch {
	case v.OK():
		d.Queue.Complete(m)
	case ctx.Err() != nil:
		d.Queue.Release(m, d.Backoff)
	default:
		v.DeadLettered = d.Queue.Abandon(m, time.Duration(m.DeliveryCount)*d.Backoff, v.Summary)
		v.Redelivered = !v.DeadLettered
	}
}

// ErrNoAnswer is returned by Drain with StrictAnswers when a delivery got
// no HTTP answer.
var ErrNoAnswer = errors.New("a delivery got no HTTP answer")

// ErrTooManyInvocations is returned by Drain when MaxInvocations is reached
// before the queue drained.
var ErrTooManyInvocations = errors.New("the queue did not drain within the invocation bound")

// Drain delivers messages, up to MaxCalls at a time, until the queue is
// empty and no delivery is in flight (deliveries may send more messages:
// continuations, re-fan-outs). It returns early when ctx ends, with
// StrictAnswers when a delivery got no answer, or at MaxInvocations.
func (d *Driver) Drain(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, max(d.MaxCalls, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	n := 0
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("deliver messages: %w", context.Cause(ctx))
		}
		if d.MaxInvocations > 0 && n >= d.MaxInvocations {
			<-slots
			wg.Wait()
			if d.Queue.Len() == 0 && d.Queue.InFlight() == 0 {
				return nil
			}
			return ErrTooManyInvocations
		}
		m, wait, drained := d.Queue.Receive()
		if m != nil {
			n++
			wg.Go(func() {
				defer func() { <-slots }()
				v := d.Deliver(ctx, m)
				if d.StrictAnswers && v.Err != nil && ctx.Err() == nil {
					cancel(fmt.Errorf("%w: message %s: %v", ErrNoAnswer, m.ID, v.Err))
				}
			})
			continue
		}
		<-slots
		if drained {
			if d.DeadLetters {
				return d.DeliverDeadLetters(ctx)
			}
			return nil
		}
		if err := d.waitForWork(ctx, wait); err != nil {
			return err
		}
	}
}

// waitForWork waits until the queue signals (a message arrived, a delivery
// ended) or, when wait > 0, until a redelivery becomes visible.
func (d *Driver) waitForWork(ctx context.Context, wait time.Duration) error {
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-d.Queue.Wake():
	case <-timer:
	case <-ctx.Done():
		return fmt.Errorf("deliver messages: %w", context.Cause(ctx))
	}
	return nil
}

// Run asks the Runs function for a run's report ("" = the latest), with
// extra query parameters (format=text, …), and returns the HTTP response
// the function produced.
func (d *Driver) Run(ctx context.Context, runID string, query map[string]string) (funchost.HTTPResponse, error) {
	params := map[string]string{}
	if runID != "" {
		params["runId"] = runID
	}
	base := d.Base()
	v := d.invoke(ctx, runs.Name, funchost.HTTPTriggerRequest(runs.BindingRequest, "GET", base+"/api/runs/"+runID, params, query))
	var res funchost.HTTPResponse
	if v.Err != nil {
		return res, v.Err
	}
	if !v.OK() || v.Response == nil {
		return res, fmt.Errorf("runs function: %s", v.Summary)
	}
	raw, err := json.Marshal(v.Response.Outputs[runs.BindingResponse])
	if err != nil {
		return res, fmt.Errorf("runs function output: %w", err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, fmt.Errorf("runs function output: %w", err)
	}
	return res, nil
}

// DeliverDeadLetters invokes the DeadLetters function for each message
// dead-lettered since the last call, as the trigger on the queue's
// dead-letter sub-queue does: with DeadLetterReason and
// DeadLetterErrorDescription in ApplicationProperties. A failed invocation
// is retried up to the queue's max delivery count.
func (d *Driver) DeliverDeadLetters(ctx context.Context) error {
	all := d.Queue.DeadLetters()
	d.mu.Lock()
	todo := all[min(d.dlqHanded, len(all)):]
	d.dlqHanded = len(all)
	d.mu.Unlock()
	for _, dl := range todo {
		var v Invocation
		for attempt := 1; attempt <= d.Queue.MaxDeliveries(); attempt++ {
			req := funchost.ServiceBusRequest(deadletters.BindingMessage, dl.Body, funchost.BodyDoubleString, funchost.ServiceBusMeta{
				MessageID: dl.ID, DeliveryCount: dl.DeliveryCount, EnqueuedTime: dl.EnqueuedAt, SequenceNumber: dl.Seq,
				DeliveryCountAsString: true, ApplicationProperties: map[string]string{
					"DeadLetterReason": dl.Reason, "DeadLetterErrorDescription": dl.LastError,
				},
			})
			v = d.invoke(ctx, deadletters.Name, req)
			v.MessageID, v.DeliveryCount = dl.ID, attempt
			v.Redelivered = !v.OK() && attempt < d.Queue.MaxDeliveries()
			d.record(v)
			if v.OK() || ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("deliver dead letters: %w", ctx.Err())
		}
	}
	return nil
}
