package hostdriver

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/scheduler"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
	"github.com/acrpurge/acrpurge/internal/worker"
)

// workerStub serves the custom-handler protocol with a Worker that
// records what the host sent and fails some deliveries, and a Scheduler
// that fails some firings.
type workerStub struct {
	mu          sync.Mutex
	seen        []string // MessageId#DeliveryCount:body
	failUntil   map[string]int
	timerFails  int
	timerCalls  int
	inflight    atomic.Int32
	peak        atomic.Int32
	hold        time.Duration
	pastDueSeen bool
}

func (s *workerStub) worker(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	id := req.MetaString("MessageId")
	dc, _ := req.MetaInt("DeliveryCount")
	body, err := req.Payload(worker.BindingMessage)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.seen = append(s.seen, id+"#"+strconv.Itoa(dc)+":"+string(body))
	fail := dc <= s.failUntil[id]
	s.mu.Unlock()
	select {
	case <-time.After(s.hold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if fail {
		return nil, errors.New("transient failure")
	}
	return &funchost.Response{Logs: []string{"handled " + id}}, nil
}

func (s *workerStub) scheduler(_ context.Context, req *funchost.Request) (*funchost.Response, error) {
	t, err := req.Timer(scheduler.BindingTimer)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timerCalls++
	s.pastDueSeen = s.pastDueSeen || t.IsPastDue
	if s.timerCalls <= s.timerFails {
		return nil, errors.New("catalog: 503")
	}
	return &funchost.Response{Logs: []string{"fanned out"}}, nil
}

func newStubDriver(t *testing.T, s *workerStub, maxDeliveries int) *Driver {
	t.Helper()
	srv := httptest.NewServer(funchost.NewServer(map[string]funchost.Handler{
		worker.Name: s.worker, scheduler.Name: s.scheduler,
	}, nil))
	t.Cleanup(srv.Close)
	return &Driver{
		Base: func() string { return srv.URL }, Queue: fakebus.New(fakebus.Options{MaxDeliveries: maxDeliveries}),
		MaxCalls: 2, Backoff: time.Millisecond,
	}
}

// TestRedeliversThenDeadLetters: the driver delivers over the
// custom-handler protocol (body JSON-encoded twice, DeliveryCount as a
// string), delivers a failing message again with DeliveryCount+1, and
// dead-letters it after the max delivery count; at most MaxCalls run at
// once.
func TestRedeliversThenDeadLetters(t *testing.T) {
	s := &workerStub{failUntil: map[string]int{"flaky": 2, "poison": 99}, hold: 20 * time.Millisecond}
	d := newStubDriver(t, s, 3)
	for _, id := range []string{"ok-1", "flaky", "poison", "ok-2"} {
		d.Queue.Put(id, []byte(`{"repository":"team-a/`+id+`"}`))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Drain(ctx))

	got := d.Invocations()
	count := map[string]int{}
	for _, v := range got {
		count[v.MessageID]++
		assert.Equal(t, worker.Name, v.Function)
		assert.Equal(t, count[v.MessageID], v.DeliveryCount, "%s: DeliveryCount counts the deliveries", v.MessageID)
	}
	assert.Equal(t, map[string]int{"ok-1": 1, "ok-2": 1, "flaky": 3, "poison": 3}, count)
	assert.Contains(t, s.seen, `flaky#3:{"repository":"team-a/flaky"}`, "the body arrives intact, decoded by the handler")
	dl := d.Queue.DeadLetters()
	require.Len(t, dl, 1)
	assert.Equal(t, "poison", dl[0].ID)
	assert.Equal(t, 3, dl[0].DeliveryCount)
	assert.Equal(t, "transient failure", dl[0].LastError)
	for _, v := range got {
		if v.MessageID == "poison" && v.DeliveryCount == 3 {
			assert.True(t, v.DeadLettered)
			assert.False(t, v.OK())
		}
		if v.MessageID == "flaky" && v.DeliveryCount < 3 {
			assert.True(t, v.Redelivered)
		}
	}
	assert.Equal(t, int32(2), s.peak.Load(), "deliveries run in parallel, at most MaxCalls")
}

// TestDrainHonoursContext: a drain ends when its context does, and a
// delivery cut short is released, not dead-lettered.
func TestDrainHonoursContext(t *testing.T) {
	s := &workerStub{hold: time.Minute}
	d := newStubDriver(t, s, 1)
	d.Queue.Put("slow", []byte("{}"))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Drain(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Len(t, d.Queue.DeadLetters(), 1, "with maxDeliveryCount 1 the expired lock dead-letters")
}

// TestDrainStrictAnswers: with StrictAnswers a delivery that gets no HTTP
// answer fails the drain.
func TestDrainStrictAnswers(t *testing.T) {
	d := &Driver{Base: func() string { return "http://127.0.0.1:1" }, Queue: fakebus.New(fakebus.Options{}), StrictAnswers: true}
	d.Queue.Put("m", []byte("{}"))
	require.ErrorIs(t, d.Drain(t.Context()), ErrNoAnswer)
}

// TestDrainBound: MaxInvocations stops a queue that never drains.
func TestDrainBound(t *testing.T) {
	s := &workerStub{failUntil: map[string]int{"poison": 99}}
	d := newStubDriver(t, s, 50)
	d.MaxInvocations = 5
	d.Queue.Put("poison", []byte("{}"))
	require.ErrorIs(t, d.Drain(t.Context()), ErrTooManyInvocations)
}

// TestFireTimerRetries: a failed firing is retried TimerRetries times.
func TestFireTimerRetries(t *testing.T) {
	s := &workerStub{timerFails: 1}
	d := newStubDriver(t, s, 1)
	v := d.FireTimer(t.Context(), time.Now(), true)
	assert.True(t, v.OK())
	assert.Equal(t, 2, v.DeliveryCount)
	assert.True(t, s.pastDueSeen)
	s.timerFails, s.timerCalls = 99, 0
	v = d.FireTimer(t.Context(), time.Now(), false)
	assert.False(t, v.OK())
	assert.Equal(t, 1+TimerRetries, s.timerCalls)
	assert.False(t, v.Redelivered, "the last attempt is not retried")
}

// TestEncoding: bodies go as the host sends a string (JSON-encoded twice)
// unless another encoding is asked for, BodyObject (the zero Encoding)
// included.
func TestEncoding(t *testing.T) {
	var mu sync.Mutex
	var raw []string
	srv := httptest.NewServer(funchost.NewServer(map[string]funchost.Handler{
		worker.Name: func(_ context.Context, req *funchost.Request) (*funchost.Response, error) {
			mu.Lock()
			raw = append(raw, string(req.Data[worker.BindingMessage]))
			mu.Unlock()
			return &funchost.Response{}, nil
		},
	}, nil))
	t.Cleanup(srv.Close)
	d := &Driver{Base: func() string { return srv.URL }, Queue: fakebus.New(fakebus.Options{})}
	d.Queue.Put("a", []byte(`{"repository":"x"}`))
	require.NoError(t, d.Drain(t.Context()))
	object := funchost.BodyObject
	d.Encoding = &object
	d.Queue.Put("b", []byte(`{"repository":"x"}`))
	require.NoError(t, d.Drain(t.Context()))
	require.Len(t, raw, 2)
	assert.True(t, strings.HasPrefix(raw[0], `"`), "default: a JSON string, got %s", raw[0])
	assert.True(t, strings.HasPrefix(raw[1], `{`), "BodyObject: the object itself, got %s", raw[1])
}
