package localstack

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/queue"
)

// DuplicateWindow is how long the in-process queue remembers a MessageID
// (the queue's duplicateDetectionHistoryTimeWindow; infra deploys PT1H).
const DuplicateWindow = time.Hour

// message is one message in the in-process queue.
type message struct {
	id         string
	body       []byte
	enqueued   time.Time
	seq        int64
	deliveries int       // deliveries so far
	visibleAt  time.Time // not delivered before (redelivery backoff)
	lastError  string
}

// DeadLetter is a message that failed on every delivery up to the max
// delivery count and was moved to the dead-letter queue.
type DeadLetter struct {
	MessageID  string
	Deliveries int
	LastError  string
}

// memQueue stands in for the Service Bus queue. It is the app's
// queue.Sender; Service Bus duplicate detection is modelled by dropping a
// MessageID seen within DuplicateWindow.
type memQueue struct {
	now  func() time.Time
	wake chan struct{} // signalled when a message may be ready or a delivery ended

	mu         sync.Mutex
	seen       map[string]time.Time
	pending    []*message
	inflight   int
	seq        int64
	duplicates int
	dead       []DeadLetter
}

func newMemQueue(now func() time.Time) *memQueue {
	return &memQueue{now: now, wake: make(chan struct{}, 1), seen: map[string]time.Time{}}
}

// Send implements queue.Sender.
func (q *memQueue) Send(ctx context.Context, msgs []queue.Outgoing) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send %d messages: %w", len(msgs), err)
	}
	for _, m := range msgs {
		q.put(m.ID, m.Body)
	}
	return nil
}

// put enqueues a message unless its MessageID was sent within the
// duplicate detection window; it reports whether it was enqueued.
func (q *memQueue) put(id string, body []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	if at, ok := q.seen[id]; ok && now.Sub(at) < DuplicateWindow {
		q.duplicates++
		return false
	}
	q.seen[id] = now
	q.seq++
	q.pending = append(q.pending, &message{id: id, body: slices.Clone(body), enqueued: now, seq: q.seq})
	q.signal()
	return true
}

// signal wakes the delivery loop without blocking.
func (q *memQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take removes the first message that is visible now and counts it in
// flight. With none visible it returns how long until the next one becomes
// visible (0: nothing is waiting) and whether the queue is drained: empty,
// and nothing in flight that could send more.
func (q *memQueue) take() (m *message, wait time.Duration, drained bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for i, p := range q.pending {
		if !p.visibleAt.After(now) {
			q.pending = slices.Delete(q.pending, i, i+1)
			q.inflight++
			return p, 0, false
		}
		if d := p.visibleAt.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	return nil, wait, len(q.pending) == 0 && q.inflight == 0
}

// complete ends a delivery that succeeded.
func (q *memQueue) complete(*message) {
	q.mu.Lock()
	q.inflight--
	q.mu.Unlock()
	q.signal()
}

// release ends a delivery cut short by shutdown: the message stays with
// the broker (whose lock would expire) and is not settled here.
func (q *memQueue) release(*message) {
	q.mu.Lock()
	q.inflight--
	q.mu.Unlock()
	q.signal()
}

// abandon ends a failed delivery: the message becomes visible again after
// backoff, or goes to the dead-letter queue when deadLetter is set.
func (q *memQueue) abandon(m *message, backoff time.Duration, deadLetter bool) {
	q.mu.Lock()
	q.inflight--
	if deadLetter {
		q.dead = append(q.dead, DeadLetter{MessageID: m.id, Deliveries: m.deliveries, LastError: m.lastError})
	} else {
		m.visibleAt = q.now().Add(backoff)
		q.pending = append(q.pending, m)
	}
	q.mu.Unlock()
	q.signal()
}

// deadLetters returns the dead-lettered messages.
func (q *memQueue) deadLetters() []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.dead)
}

// duplicatesDropped is how many sends duplicate detection dropped.
func (q *memQueue) duplicatesDropped() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.duplicates
}
