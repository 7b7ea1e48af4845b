package e2etest

import (
	"slices"
	"sync"
	"time"

	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/scheduler/fanouttest"
)

// Message is one message in the in-memory queue.
type Message struct {
	ID         string
	Body       []byte
	EnqueuedAt time.Time
	// Deliveries so far (the Service Bus DeliveryCount of the next delivery
	// is Deliveries+1).
	Deliveries int
}

// Queue stands in for the Service Bus queue: its Sender (the app's) drops
// repeated MessageIDs like duplicate detection and captures what was sent,
// which joins the queue for the driver to deliver. It is safe for
// concurrent use.
type Queue struct {
	*fanouttest.Sender
	mu      sync.Mutex
	pending []*Message
	sent    []queue.Outgoing
}

// NewQueue returns an empty queue.
func NewQueue() *Queue { return &Queue{Sender: fanouttest.NewSender()} }

// collect moves what the app sent to the end of the queue. Caller holds mu.
func (q *Queue) collect() {
	for _, o := range q.Take() {
		q.sent = append(q.sent, o)
		q.pending = append(q.pending, &Message{ID: o.ID, Body: o.Body, EnqueuedAt: time.Now()})
	}
}

// Put enqueues a message sent by someone else (the portal, Event Grid).
func (q *Queue) Put(id string, body []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	q.pending = append(q.pending, &Message{ID: id, Body: body, EnqueuedAt: time.Now()})
}

// Pop removes and returns the first queued message, or nil.
func (q *Queue) Pop() *Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	if len(q.pending) == 0 {
		return nil
	}
	m := q.pending[0]
	q.pending = q.pending[1:]
	return m
}

// PushFront puts m back at the head of the queue (a redelivery).
func (q *Queue) PushFront(m *Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	q.pending = append([]*Message{m}, q.pending...)
}

// PushBack puts m back at the end of the queue.
func (q *Queue) PushBack(m *Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	q.pending = append(q.pending, m)
}

// Len is the number of queued messages.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	return len(q.pending)
}

// IDs returns the MessageIDs of the queued messages, in order.
func (q *Queue) IDs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	out := make([]string, len(q.pending))
	for i, m := range q.pending {
		out[i] = m.ID
	}
	return out
}

// Sent returns every message the app ever sent (duplicates dropped), in
// sending order, whether delivered yet or not.
func (q *Queue) Sent() []queue.Outgoing {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.collect()
	return slices.Clone(q.sent)
}
