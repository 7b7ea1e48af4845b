// Package fakebus is the one in-memory stand-in for the Service Bus queue,
// shared by `handler local`, the end-to-end tests, the chaos suite and the
// unit tests of the Scheduler and the Worker. It models what the app relies
// on:
//
//   - duplicate detection: a MessageID seen within DuplicateWindow is dropped
//     on send (the app's MessageIDs make re-sends idempotent);
//   - peek-lock delivery: Receive locks the first visible message (in
//     sequence order) and counts the delivery (DeliveryCount);
//   - settlement: Complete removes it; Abandon makes it visible again, in its
//     sequence position, after a backoff, or moves it to the dead-letter
//     queue once it has been delivered MaxDeliveries times; Release models a
//     lock that expired without settlement (a killed instance): the message
//     is delivered again like an abandoned one;
//   - the app's sends can be made to fail (FailAfter), as when the namespace
//     is unreachable.
//
// A Queue is safe for concurrent use. It is test and demo support: no
// production package imports it.
package fakebus

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/queue"
)

// Defaults of Options.
const (
	// DefaultDuplicateWindow is the queue's
	// duplicateDetectionHistoryTimeWindow (infra deploys PT1H).
	DefaultDuplicateWindow = time.Hour
	// DefaultMaxDeliveries is the queue's maxDeliveryCount (infra deploys 5).
	DefaultMaxDeliveries = 5
)

// Options tune New; zero values take the defaults.
type Options struct {
	Now             func() time.Time // default time.Now
	DuplicateWindow time.Duration
	MaxDeliveries   int
}

// Message is one message in the queue.
type Message struct {
	ID         string
	Body       []byte
	EnqueuedAt time.Time
	Seq        int64
	// DeliveryCount is the number of deliveries so far, this one included
	// once the message has been received.
	DeliveryCount int
	// LastError is the failure given to the last Abandon.
	LastError string
	visibleAt time.Time
}

// DeadLetter is a message that was moved to the dead-letter queue.
type DeadLetter struct {
	Message
	// Reason is the dead-letter reason Service Bus gives
	// (MaxDeliveryCountExceeded).
	Reason string
}

// ReasonMaxDeliveries is the dead-letter reason of a message delivered
// MaxDeliveries times without being completed.
const ReasonMaxDeliveries = "MaxDeliveryCountExceeded"

// Queue is the in-memory queue.
type Queue struct {
	o    Options
	wake chan struct{}

	mu         sync.Mutex
	seen       map[string]time.Time
	pending    []*Message        // sorted by Seq
	locked     map[*Message]bool // received and not settled
	seq        int64
	duplicates int
	dead       []DeadLetter
	sent       []queue.Outgoing // everything the app sent (duplicates dropped)
	calls      []int            // messages per successful Send call
	failAfter  int
	failErr    error
}

// New returns an empty queue.
func New(o Options) *Queue {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = DefaultMaxDeliveries
	}
	return &Queue{o: o, wake: make(chan struct{}, 1), seen: map[string]time.Time{}, locked: map[*Message]bool{}, failAfter: -1}
}

// MaxDeliveries is the queue's maxDeliveryCount.
func (q *Queue) MaxDeliveries() int { return q.o.MaxDeliveries }

// Send implements queue.Sender: the app's sends. Messages whose MessageID
// was sent within the duplicate window are dropped.
func (q *Queue) Send(ctx context.Context, msgs []queue.Outgoing) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send %d messages: %w", len(msgs), err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failErr != nil && len(q.calls) >= q.failAfter {
		return q.failErr
	}
	q.calls = append(q.calls, len(msgs))
	for _, m := range msgs {
		if q.putLocked(m.ID, m.Body) {
			q.sent = append(q.sent, queue.Outgoing{ID: m.ID, Body: slices.Clone(m.Body)})
		}
	}
	return nil
}

// FailAfter makes Send fail with err once n calls have succeeded; a nil err
// makes it succeed again.
func (q *Queue) FailAfter(n int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failAfter, q.failErr = n, err
}

// Put enqueues a message sent by someone else (the portal, Event Grid),
// with duplicate detection; it reports whether the message was enqueued.
func (q *Queue) Put(id string, body []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.putLocked(id, body)
}

func (q *Queue) putLocked(id string, body []byte) bool {
	now := q.o.Now()
	if at, ok := q.seen[id]; ok && now.Sub(at) < q.o.DuplicateWindow {
		q.duplicates++
		return false
	}
	q.seen[id] = now
	q.seq++
	q.pending = append(q.pending, &Message{ID: id, Body: slices.Clone(body), EnqueuedAt: now, Seq: q.seq})
	q.signal()
	return true
}

// signal wakes a waiting receiver without blocking.
func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Wake is signalled when a message may have become ready or a delivery
// ended.
func (q *Queue) Wake() <-chan struct{} { return q.wake }

// Receive locks the first visible message and counts its delivery. With
// none visible it returns nil, how long until the next one becomes visible
// (0: none is waiting) and whether the queue is drained: empty, with no
// delivery in flight that could send more.
func (q *Queue) Receive() (m *Message, wait time.Duration, drained bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.o.Now()
	for i, p := range q.pending {
		if !p.visibleAt.After(now) {
			q.pending = slices.Delete(q.pending, i, i+1)
			q.locked[p] = true
			p.DeliveryCount++
			return p, 0, false
		}
		if d := p.visibleAt.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	return nil, wait, len(q.pending) == 0 && len(q.locked) == 0
}

// Complete settles a delivery that succeeded: the message is gone.
func (q *Queue) Complete(m *Message) {
	q.mu.Lock()
	delete(q.locked, m)
	q.mu.Unlock()
	q.signal()
}

// Abandon settles a failed delivery: the message becomes visible again
// after backoff, in its sequence position, or is dead-lettered when it has
// been delivered MaxDeliveries times. It reports whether it was
// dead-lettered.
func (q *Queue) Abandon(m *Message, backoff time.Duration, lastError string) (deadLettered bool) {
	q.mu.Lock()
	defer q.signal()
	defer q.mu.Unlock()
	delete(q.locked, m)
	m.LastError = lastError
	if m.DeliveryCount >= q.o.MaxDeliveries {
		q.dead = append(q.dead, DeadLetter{Message: *m, Reason: ReasonMaxDeliveries})
		return true
	}
	m.visibleAt = q.o.Now().Add(backoff)
	q.requeueLocked(m)
	return false
}

// Release ends a delivery whose lock was lost without settlement (the
// instance was killed or shut down): Service Bus delivers the message again
// once the lock expires, here after backoff. It counts as a failed delivery
// for the dead-letter limit, as in Service Bus.
func (q *Queue) Release(m *Message, backoff time.Duration) (deadLettered bool) {
	return q.Abandon(m, backoff, "the message lock expired without settlement")
}

// requeueLocked puts m back in its sequence position, unless it is queued
// already.
func (q *Queue) requeueLocked(m *Message) {
	if slices.Contains(q.pending, m) {
		return
	}
	i, _ := slices.BinarySearchFunc(q.pending, m.Seq, func(p *Message, seq int64) int { return cmp.Compare(p.Seq, seq) })
	q.pending = slices.Insert(q.pending, i, m)
}

// Messages returns the queued messages (not in flight), in order.
func (q *Queue) Messages() []queue.Outgoing {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]queue.Outgoing, len(q.pending))
	for i, m := range q.pending {
		out[i] = queue.Outgoing{ID: m.ID, Body: slices.Clone(m.Body)}
	}
	return out
}

// Take removes the queued messages and returns them (their MessageIDs stay
// known to duplicate detection).
func (q *Queue) Take() []queue.Outgoing {
	out := q.Messages()
	q.mu.Lock()
	q.pending = nil
	q.mu.Unlock()
	return out
}

// Sent returns every message the app sent (duplicates dropped), in sending
// order, delivered or not.
func (q *Queue) Sent() []queue.Outgoing {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.sent)
}

// Calls returns the number of messages of every successful Send call.
func (q *Queue) Calls() []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.calls)
}

// Len is the number of queued messages (not in flight).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// IDs returns the MessageIDs of the queued messages, in order.
func (q *Queue) IDs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, len(q.pending))
	for i, m := range q.pending {
		out[i] = m.ID
	}
	return out
}

// InFlight is the number of messages received and not settled.
func (q *Queue) InFlight() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.locked)
}

// DeadLetters returns the dead-lettered messages, oldest first.
func (q *Queue) DeadLetters() []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.dead)
}

// TakeDeadLetters removes the dead-lettered messages and returns them (what
// a receiver of the dead-letter queue completes).
func (q *Queue) TakeDeadLetters() []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.dead
	q.dead = nil
	return out
}

// DuplicatesDropped is how many sends duplicate detection dropped.
func (q *Queue) DuplicatesDropped() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.duplicates
}

// Requeue puts a received (or completed) message back, in its sequence
// position, without counting a failed delivery: for tests that settle
// deliveries by hand (a killed instance, whose message the test decides to
// deliver again). Requeueing a queued message does nothing.
func (q *Queue) Requeue(m *Message) {
	q.mu.Lock()
	delete(q.locked, m)
	m.visibleAt = time.Time{}
	q.requeueLocked(m)
	q.mu.Unlock()
	q.signal()
}

// DeadLetter moves a message to the dead-letter queue by hand (a test that
// delivers by hand and settles its last failed delivery itself).
func (q *Queue) DeadLetter(m *Message, lastError string) {
	q.mu.Lock()
	delete(q.locked, m)
	m.LastError = lastError
	q.dead = append(q.dead, DeadLetter{Message: *m, Reason: ReasonMaxDeliveries})
	q.mu.Unlock()
	q.signal()
}
