package fakebus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

func TestDuplicateDetection(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)}
	q := New(Options{Now: clock.now})
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "r/1", Body: []byte("a")}, {ID: "r/2", Body: []byte("b")}}))
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "r/1", Body: []byte("again")}}))
	clock.advance(DefaultDuplicateWindow - time.Second)
	assert.False(t, q.Put("r/2", []byte("late")), "still within the window")
	assert.Equal(t, 2, q.DuplicatesDropped())
	assert.Equal(t, []int{2, 1}, q.Calls())
	assert.Len(t, q.Sent(), 2)

	var got []string
	for {
		m, _, _ := q.Receive()
		if m == nil {
			break
		}
		got = append(got, m.ID+"="+string(m.Body))
		q.Complete(m)
	}
	assert.Equal(t, []string{"r/1=a", "r/2=b"}, got)
	clock.advance(2 * time.Second)
	assert.True(t, q.Put("r/1", []byte("c")), "outside the window a MessageID is new again")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, q.Send(ctx, []queue.Outgoing{{ID: "x"}}), context.Canceled)
}

func TestVisibilityOrderAndDeadLetter(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 3, 4, 2, 0, 0, 0, time.UTC)}
	q := New(Options{Now: clock.now, MaxDeliveries: 2})
	_, _, drained := q.Receive()
	assert.True(t, drained)
	q.Put("m", []byte("{}"))
	q.Put("n", []byte("{}"))
	m, _, _ := q.Receive()
	require.NotNil(t, m)
	assert.Equal(t, 1, m.DeliveryCount)
	assert.Equal(t, 1, q.InFlight())
	assert.False(t, q.Abandon(m, 5*time.Second, "boom"))
	n, _, _ := q.Receive()
	require.NotNil(t, n)
	assert.Equal(t, "n", n.ID, "m is not visible before its backoff")
	none, wait, drained := q.Receive()
	assert.Nil(t, none)
	assert.Equal(t, 5*time.Second, wait)
	assert.False(t, drained, "a delivery in flight may still send messages")
	assert.False(t, q.Abandon(n, 0, "again"))
	clock.advance(5 * time.Second)
	again, _, _ := q.Receive()
	require.NotNil(t, again)
	assert.Equal(t, "m", again.ID, "an abandoned message keeps its sequence position")
	assert.Equal(t, 2, again.DeliveryCount)
	assert.True(t, q.Abandon(again, 0, "boom"), "the last delivery dead-letters")
	dl := q.DeadLetters()
	require.Len(t, dl, 1)
	assert.Equal(t, "m", dl[0].ID)
	assert.Equal(t, 2, dl[0].DeliveryCount)
	assert.Equal(t, "boom", dl[0].LastError)
	assert.Equal(t, ReasonMaxDeliveries, dl[0].Reason)
	assert.Len(t, q.TakeDeadLetters(), 1)
	assert.Empty(t, q.DeadLetters())
}

func TestSendFailures(t *testing.T) {
	q := New(Options{})
	errSend := errors.New("unreachable")
	q.FailAfter(1, errSend)
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "a"}}))
	require.ErrorIs(t, q.Send(t.Context(), []queue.Outgoing{{ID: "b"}}), errSend)
	q.FailAfter(0, nil)
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "b"}}))
	assert.Equal(t, []string{"a", "b"}, q.IDs())
	assert.Len(t, q.Take(), 2)
	assert.Zero(t, q.Len())
	require.NoError(t, q.Send(t.Context(), []queue.Outgoing{{ID: "a"}}))
	assert.Zero(t, q.Len(), "a taken message's ID stays known to duplicate detection")
}
