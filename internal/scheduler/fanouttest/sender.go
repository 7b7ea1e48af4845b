// Package fanouttest provides an in-memory queue.Sender for tests: it keeps
// what was sent and drops repeated MessageIDs, as Service Bus duplicate
// detection does.
package fanouttest

import (
	"context"
	"slices"
	"sync"

	"github.com/acrpurge/acrpurge/internal/queue"
)

// Sender captures sent messages. It is safe for concurrent use.
type Sender struct {
	mu        sync.Mutex
	seen      map[string]bool
	msgs      []queue.Outgoing
	calls     []int
	failAfter int
	err       error
}

// NewSender returns an empty Sender.
func NewSender() *Sender { return &Sender{seen: map[string]bool{}, failAfter: -1} }

// Send implements queue.Sender. Messages whose MessageID was sent before
// are dropped.
func (s *Sender) Send(ctx context.Context, msgs []queue.Outgoing) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil && len(s.calls) >= s.failAfter {
		return s.err
	}
	s.calls = append(s.calls, len(msgs))
	for _, m := range msgs {
		if !s.seen[m.ID] {
			s.seen[m.ID] = true
			m.Body = slices.Clone(m.Body)
			s.msgs = append(s.msgs, m)
		}
	}
	return nil
}

// FailAfter makes Send fail with err once n calls have succeeded; a nil err
// makes it succeed again.
func (s *Sender) FailAfter(n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAfter, s.err = n, err
}

// Messages returns the messages captured and not taken, in sending order.
func (s *Sender) Messages() []queue.Outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Take returns the messages captured and not taken, and forgets them (their
// MessageIDs stay known to duplicate detection).
func (s *Sender) Take() []queue.Outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.msgs
	s.msgs = nil
	return out
}

// Calls returns the number of messages of every successful Send call.
func (s *Sender) Calls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}
