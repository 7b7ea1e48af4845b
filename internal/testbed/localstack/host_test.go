package localstack

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/app"
	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestQueueDuplicateDetection(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)}
	q := newMemQueue(clock.now)
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "r/1", Body: []byte("a")}, {ID: "r/2", Body: []byte("b")}}))
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "r/1", Body: []byte("again")}}))
	clock.advance(DuplicateWindow - time.Second)
	assert.False(t, q.put("r/2", []byte("late")), "still within the window")
	assert.Equal(t, 2, q.duplicatesDropped())

	var got []string
	for {
		m, _, _ := q.take()
		if m == nil {
			break
		}
		got = append(got, m.id+"="+string(m.body))
		q.complete(m)
	}
	assert.Equal(t, []string{"r/1=a", "r/2=b"}, got)
	clock.advance(2 * time.Second)
	assert.True(t, q.put("r/1", []byte("c")), "outside the window a MessageID is new again")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, q.Send(ctx, []queue.Outgoing{{ID: "x"}}), context.Canceled)
}

func TestQueueVisibilityAndDrained(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)}
	q := newMemQueue(clock.now)
	_, _, drained := q.take()
	assert.True(t, drained)
	q.put("m", []byte("{}"))
	m, _, _ := q.take()
	require.NotNil(t, m)
	none, _, drained := q.take()
	assert.Nil(t, none)
	assert.False(t, drained, "a delivery in flight may still send messages")
	m.deliveries++
	q.abandon(m, 5*time.Second, false)
	none, wait, drained := q.take()
	assert.Nil(t, none, "not visible before its backoff")
	assert.Equal(t, 5*time.Second, wait)
	assert.False(t, drained)
	clock.advance(5 * time.Second)
	again, _, _ := q.take()
	require.NotNil(t, again)
	assert.Equal(t, 1, again.deliveries)
	again.lastError = "boom"
	q.abandon(again, 0, true)
	_, _, drained = q.take()
	assert.True(t, drained)
	assert.Equal(t, []DeadLetter{{MessageID: "m", Deliveries: 1, LastError: "boom"}}, q.deadLetters())
}

// workerStub serves the custom-handler protocol with a Worker that
// records what the host sent and fails some deliveries.
type workerStub struct {
	mu        sync.Mutex
	seen      []string // MessageId/DeliveryCount:body
	failUntil map[string]int
	inflight  atomic.Int32
	peak      atomic.Int32
	hold      time.Duration
}

func (s *workerStub) handler(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	id := req.MetaString("MessageId")
	dc, _ := req.MetaInt("DeliveryCount")
	body, err := req.Payload(app.BindingMessage)
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

func newStubHost(t *testing.T, s *workerStub, maxDeliveries int) (*host, *memQueue) {
	t.Helper()
	srv := httptest.NewServer(funchost.NewServer(map[string]funchost.Handler{app.FunctionWorker: s.handler}, nil))
	t.Cleanup(srv.Close)
	q := newMemQueue(time.Now)
	return &host{base: srv.URL, q: q, now: time.Now, maxCalls: 2, maxDeliveries: maxDeliveries,
		backoff: time.Millisecond}, q
}

// TestHostRedeliversThenDeadLetters: the host stand-in delivers over the
// custom-handler protocol (body JSON-encoded twice, DeliveryCount as a
// string), delivers a failing message again with DeliveryCount+1, and
// dead-letters it after the max delivery count; at most maxCalls run at
// once.
func TestHostRedeliversThenDeadLetters(t *testing.T) {
	s := &workerStub{failUntil: map[string]int{"flaky": 2, "poison": 99}, hold: 20 * time.Millisecond}
	h, q := newStubHost(t, s, 3)
	var got []Invocation
	var mu sync.Mutex
	h.onInvocation = func(v Invocation) { mu.Lock(); got = append(got, v); mu.Unlock() }
	for _, id := range []string{"ok-1", "flaky", "poison", "ok-2"} {
		q.put(id, []byte(`{"repository":"team-a/`+id+`"}`))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.drain(ctx))

	count := map[string]int{}
	for _, v := range got {
		count[v.MessageID]++
		assert.Equal(t, app.FunctionWorker, v.Function)
		assert.Equal(t, count[v.MessageID], v.DeliveryCount, "%s: DeliveryCount counts the deliveries", v.MessageID)
	}
	assert.Equal(t, map[string]int{"ok-1": 1, "ok-2": 1, "flaky": 3, "poison": 3}, count)
	assert.Contains(t, s.seen, `flaky#3:{"repository":"team-a/flaky"}`, "the body arrives intact, decoded by the handler")
	assert.Equal(t, []DeadLetter{{MessageID: "poison", Deliveries: 3, LastError: "transient failure"}}, q.deadLetters())
	for _, v := range got {
		if v.MessageID == "poison" && v.DeliveryCount == 3 {
			assert.True(t, v.DeadLettered)
			assert.False(t, v.OK())
		}
		if v.MessageID == "flaky" && v.DeliveryCount < 3 {
			assert.True(t, v.Redelivered)
		}
	}
	assert.LessOrEqual(t, s.peak.Load(), int32(2), "maxConcurrentCalls")
	assert.Equal(t, int32(2), s.peak.Load(), "deliveries run in parallel")
}

// TestHostDrainHonoursContext: a drain ends when its context does.
func TestHostDrainHonoursContext(t *testing.T) {
	s := &workerStub{hold: time.Minute}
	h, q := newStubHost(t, s, 5)
	q.put("slow", []byte("{}"))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.drain(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Empty(t, q.deadLetters(), "a delivery cut short by shutdown is not dead-lettered")
}

func TestSplitRefAndPushEvent(t *testing.T) {
	for ref, want := range map[string][2]string{
		"team-a/api:ci-1": {"team-a/api", "ci-1"},
		"a:b:c":           {"a:b", "c"},
		"noColon":         {},
		":tag":            {},
		"repo:":           {},
	} {
		repo, tag, ok := splitRef(ref)
		assert.Equal(t, want[0] != "", ok, ref)
		assert.Equal(t, want, [2]string{repo, tag}, ref)
	}
	for _, ce := range []bool{false, true} {
		body := pushEvent(ce, "9a3c1d2e-0001", "127.0.0.1:5000", "team-a/api", "ci-1",
			"sha256:9f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809",
			"application/vnd.oci.image.manifest.v1+json", 1234, time.Now())
		d, err := queue.Decode(body)
		require.NoError(t, err, string(body))
		require.Equal(t, queue.KindEvent, d.Kind)
		assert.Equal(t, "team-a/api", d.Event.Repository)
		assert.Equal(t, "ci-1", d.Event.Tag)
		assert.Equal(t, "127.0.0.1:5000", d.Event.Host)
		assert.Equal(t, "9a3c1d2e-0001", d.Event.ID)
		want := queue.SchemaEventGrid
		if ce {
			want = queue.SchemaCloudEvents
		}
		assert.Equal(t, want, d.Event.Schema)
	}
}

func TestFormatInvocation(t *testing.T) {
	line := FormatInvocation(Invocation{Function: "Worker", MessageID: "s-20250304T020000Z/1", DeliveryCount: 2, Status: 200,
		Summary: "run s-20250304T020000Z batch 1: 3 repositories (3 done); deleted 8 tags, 20 manifests, 2621440 bytes", Duration: 29 * time.Millisecond})
	assert.Regexp(t, `^  Worker\s+s-20250304T020000Z/1\s+delivery 2\s+ok\s+29ms\s+3 repositories \(3 done\); deleted 8 tags, 20 manifests, 2\.5 MiB$`, line)
	line = FormatInvocation(Invocation{Function: "Worker", MessageID: "0d3f6a4e-5b1c-4c2e-9a43-2f1e5d6c7b8a", DeliveryCount: 5, Status: 500,
		Summary: "1 of 3 repositories failed transiently", DeadLettered: true})
	assert.Contains(t, line, "0d3f6a4e-5b1c-4c2e-...")
	assert.Contains(t, line, "failed")
	assert.Contains(t, line, "dead-lettered after 5 deliveries")
	line = FormatInvocation(Invocation{Function: "Scheduler", DeliveryCount: 2, Status: 500, Summary: "catalog: 503", Redelivered: true})
	assert.Regexp(t, `^  Scheduler\s+timer\s+retry 1\s+failed .* catalog: 503 -> retried$`, line)
}
