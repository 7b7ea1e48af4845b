package queue

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// fakeBatch holds messages up to a byte capacity, like the SDK batch.
type fakeBatch struct {
	capacity, used int
	msgs           []*azservicebus.Message
}

func msgCost(m *azservicebus.Message) int { return len(m.Body) + len(*m.MessageID) + 16 }

func (b *fakeBatch) AddMessage(m *azservicebus.Message, _ *azservicebus.AddMessageOptions) error {
	if b.used+msgCost(m) > b.capacity {
		return azservicebus.ErrMessageTooLarge
	}
	b.used += msgCost(m)
	b.msgs = append(b.msgs, m)
	return nil
}

func (b *fakeBatch) NumMessages() int32 { return int32(len(b.msgs)) }

type fakeSender struct {
	capacity  int
	sent      [][]*azservicebus.Message
	failSend  int // fail the n-th SendBatch (1-based); 0 never
	failNew   bool
	newCalls  int
	closed    bool
	sendCalls int
}

func (f *fakeSender) NewBatch(context.Context) (messageBatch, error) {
	f.newCalls++
	if f.failNew {
		return nil, errors.New("link detached")
	}
	return &fakeBatch{capacity: f.capacity}, nil
}

func (f *fakeSender) SendBatch(_ context.Context, b messageBatch) error {
	f.sendCalls++
	if f.sendCalls == f.failSend {
		return errors.New("server busy")
	}
	f.sent = append(f.sent, b.(*fakeBatch).msgs)
	return nil
}

func (f *fakeSender) Close(context.Context) error { f.closed = true; return nil }

func outgoing(n, size int) []Outgoing {
	out := make([]Outgoing, n)
	for i := range out {
		out[i] = Outgoing{ID: fmt.Sprintf("run/%d", i+1), Body: []byte(strings.Repeat("x", size)), Subject: "acrpurge/schedule"}
	}
	return out
}

func ids(batches [][]*azservicebus.Message) [][]string {
	var out [][]string
	for _, b := range batches {
		var s []string
		for _, m := range b {
			s = append(s, *m.MessageID)
		}
		out = append(out, s)
	}
	return out
}

func TestSendSplitsBatches(t *testing.T) {
	cost := 100 + len("run/1") + 16 // every test id has 5 characters below 10
	tests := []struct {
		name     string
		n        int
		capacity int
		want     [][]string
	}{
		{"one batch", 3, 10 * cost, [][]string{{"run/1", "run/2", "run/3"}}},
		{"exactly full", 3, 3 * cost, [][]string{{"run/1", "run/2", "run/3"}}},
		{"one byte short", 3, 3*cost - 1, [][]string{{"run/1", "run/2"}, {"run/3"}}},
		{"two per batch", 5, 2 * cost, [][]string{{"run/1", "run/2"}, {"run/3", "run/4"}, {"run/5"}}},
		{"one per batch", 3, cost, [][]string{{"run/1"}, {"run/2"}, {"run/3"}}},
		{"nothing", 0, cost, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &fakeSender{capacity: tt.capacity}
			s := newSender(fs, "acr-purge", nil)
			if err := s.Send(t.Context(), outgoing(tt.n, 100)); err != nil {
				t.Fatal(err)
			}
			if got := ids(fs.sent); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("batches %v, want %v", got, tt.want)
			}
			for _, b := range fs.sent {
				for _, m := range b {
					if *m.ContentType != "application/json" || *m.Subject != "acrpurge/schedule" || len(m.Body) != 100 {
						t.Errorf("message %s: content type %q subject %q", *m.MessageID, *m.ContentType, *m.Subject)
					}
				}
			}
		})
	}
}

func TestSendTooLargeNamesMessage(t *testing.T) {
	msgs := outgoing(4, 10)
	msgs[2].Body = []byte(strings.Repeat("y", 500))
	fs := &fakeSender{capacity: 200}
	err := newSender(fs, "acr-purge", nil).Send(t.Context(), msgs)
	if err == nil || !strings.Contains(err.Error(), "run/3") || !errors.Is(err, azservicebus.ErrMessageTooLarge) {
		t.Fatalf("error %v does not name run/3", err)
	}
	// What came before was sent; nothing after it.
	if got := ids(fs.sent); !reflect.DeepEqual(got, [][]string{{"run/1", "run/2"}}) {
		t.Errorf("sent %v", got)
	}

	fs = &fakeSender{capacity: 200}
	err = newSender(fs, "acr-purge", nil).Send(t.Context(), msgs[2:])
	if err == nil || !strings.Contains(err.Error(), "run/3") || len(fs.sent) != 0 {
		t.Fatalf("first message too large: err %v, sent %v", err, ids(fs.sent))
	}
}

func TestSendErrors(t *testing.T) {
	cost := 10 + 5 + 16
	t.Run("send fails", func(t *testing.T) {
		fs := &fakeSender{capacity: 2 * cost, failSend: 2}
		err := newSender(fs, "acr-purge", nil).Send(t.Context(), outgoing(5, 10))
		if err == nil || !strings.Contains(err.Error(), "server busy") || !strings.Contains(err.Error(), "after 2 sent") || !strings.Contains(err.Error(), "run/3") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("new batch fails", func(t *testing.T) {
		fs := &fakeSender{capacity: 2 * cost, failNew: true}
		if err := newSender(fs, "acr-purge", nil).Send(t.Context(), outgoing(1, 10)); err == nil || !strings.Contains(err.Error(), "link detached") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		fs := &fakeSender{capacity: 2 * cost}
		if err := newSender(fs, "acr-purge", nil).Send(ctx, outgoing(3, 10)); !errors.Is(err, context.Canceled) || len(fs.sent) != 0 {
			t.Fatalf("err %v sent %v", err, ids(fs.sent))
		}
	})
	t.Run("invalid messages", func(t *testing.T) {
		for _, m := range []Outgoing{{Body: []byte("{}")}, {ID: strings.Repeat("i", 129), Body: []byte("{}")}, {ID: "x"}} {
			fs := &fakeSender{capacity: 1000}
			if err := newSender(fs, "acr-purge", nil).Send(t.Context(), []Outgoing{m}); err == nil || fs.newCalls != 0 {
				t.Errorf("%+v: err %v, batches made %d", m, err, fs.newCalls)
			}
		}
	})
	t.Run("close", func(t *testing.T) {
		fs := &fakeSender{}
		if err := newSender(fs, "acr-purge", nil).Close(t.Context()); err != nil || !fs.closed {
			t.Fatalf("close: %v %v", err, fs.closed)
		}
	})
}

func TestNewOutgoing(t *testing.T) {
	m := Message{Version: 1, RunID: "r1", Batch: 2, Batches: 2, Trigger: TriggerPortal, Repositories: []string{"a"}, DryRun: true}
	o, err := NewOutgoing(m)
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "r1/2" || o.Subject != "acrpurge/portal" {
		t.Errorf("%+v", o)
	}
	d, err := Decode(o.Body)
	if err != nil || !reflect.DeepEqual(*d.Own, m) {
		t.Errorf("body %s decodes to %+v, %v", o.Body, d.Own, err)
	}
	m.Batch = 3
	if _, err := NewOutgoing(m); !IsReject(err) {
		t.Errorf("invalid message: %v", err)
	}
}
