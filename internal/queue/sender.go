package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// ContentTypeJSON is the ContentType set on every sent message.
const ContentTypeJSON = "application/json"

// Outgoing is one message ready to send.
type Outgoing struct {
	ID      string // Service Bus MessageID (duplicate detection key)
	Body    []byte
	Subject string
}

// NewOutgoing validates and encodes m. The subject is "acrpurge/<trigger>".
func NewOutgoing(m Message) (Outgoing, error) {
	body, err := m.Encode()
	if err != nil {
		return Outgoing{}, err
	}
	return Outgoing{ID: m.MessageID(), Body: body, Subject: "acrpurge/" + m.Trigger}, nil
}

// messageBatch is the part of *azservicebus.MessageBatch the sender uses.
type messageBatch interface {
	AddMessage(m *azservicebus.Message, o *azservicebus.AddMessageOptions) error
	NumMessages() int32
}

// batchSender is the part of *azservicebus.Sender the sender uses, with the
// batch behind messageBatch so that tests can fake a batch of any capacity.
type batchSender interface {
	NewBatch(ctx context.Context) (messageBatch, error)
	SendBatch(ctx context.Context, b messageBatch) error
	Close(ctx context.Context) error
}

// sdkSender adapts *azservicebus.Sender to batchSender.
type sdkSender struct{ s *azservicebus.Sender }

func (a sdkSender) NewBatch(ctx context.Context) (messageBatch, error) {
	return a.s.NewMessageBatch(ctx, nil)
}

func (a sdkSender) SendBatch(ctx context.Context, b messageBatch) error {
	mb, ok := b.(*azservicebus.MessageBatch)
	if !ok {
		return fmt.Errorf("queue: batch of type %T is not an SDK batch", b)
	}
	return a.s.SendMessageBatch(ctx, mb, nil)
}

func (a sdkSender) Close(ctx context.Context) error { return a.s.Close(ctx) }

// ServiceBusSender sends messages to one queue in SDK message batches.
type ServiceBusSender struct {
	queue  string
	sender batchSender
	logger *slog.Logger
}

// NewServiceBusSender returns a sender for queue. A nil logger discards.
func NewServiceBusSender(client *azservicebus.Client, queue string, logger *slog.Logger) (*ServiceBusSender, error) {
	if client == nil {
		return nil, errors.New("queue: nil Service Bus client")
	}
	if queue == "" {
		return nil, errors.New("queue: empty queue name")
	}
	s, err := client.NewSender(queue, nil)
	if err != nil {
		return nil, fmt.Errorf("queue: new sender for %q: %w", queue, err)
	}
	return newSender(sdkSender{s}, queue, logger), nil
}

func newSender(bs batchSender, queue string, logger *slog.Logger) *ServiceBusSender {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &ServiceBusSender{queue: queue, sender: bs, logger: logger.With("queue", queue)}
}

// Send sends msgs in order, packing as many as fit into each batch and
// starting a new batch when one is full. Every message gets its MessageID,
// ContentType application/json and Subject. A message too large for an empty
// batch is an error naming its ID; nothing after it is sent. Messages sent
// before an error stay sent: resending them is safe because duplicate
// detection drops repeated MessageIDs.
func (s *ServiceBusSender) Send(ctx context.Context, msgs []Outgoing) error {
	for i, m := range msgs {
		if m.ID == "" {
			return fmt.Errorf("queue: message %d has no ID", i)
		}
		if len(m.ID) > MaxMessageIDLength {
			return fmt.Errorf("queue: message %d ID is %d characters, longer than %d", i, len(m.ID), MaxMessageIDLength)
		}
		if len(m.Body) == 0 {
			return fmt.Errorf("queue: message %s has an empty body", m.ID)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	sent, batches := 0, 0
	var batch messageBatch
	var inBatch []string
	flush := func() error {
		if batch == nil || batch.NumMessages() == 0 {
			return nil
		}
		if err := s.sender.SendBatch(ctx, batch); err != nil {
			return fmt.Errorf("queue: send batch of %d messages (%s … %s) to %q after %d sent: %w",
				len(inBatch), inBatch[0], inBatch[len(inBatch)-1], s.queue, sent, err)
		}
		sent += len(inBatch)
		batches++
		s.logger.DebugContext(ctx, "sent message batch", "messages", len(inBatch), "first", inBatch[0])
		batch, inBatch = nil, nil
		return nil
	}
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("queue: send to %q stopped after %d of %d messages: %w", s.queue, sent, len(msgs), err)
		}
		sbm := toSDK(m)
		for attempt := 0; ; attempt++ {
			if batch == nil {
				b, err := s.sender.NewBatch(ctx)
				if err != nil {
					return fmt.Errorf("queue: new message batch for %q after %d sent: %w", s.queue, sent, err)
				}
				batch = b
			}
			err := batch.AddMessage(sbm, nil)
			if err == nil {
				inBatch = append(inBatch, m.ID)
				break
			}
			if !errors.Is(err, azservicebus.ErrMessageTooLarge) {
				return fmt.Errorf("queue: add message %s to batch: %w", m.ID, err)
			}
			if batch.NumMessages() == 0 || attempt > 0 {
				return fmt.Errorf("queue: message %s (%d bytes) does not fit in an empty batch: %w", m.ID, len(m.Body), err)
			}
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "sent messages", "messages", sent, "batches", batches)
	return nil
}

// Close closes the underlying SDK sender.
func (s *ServiceBusSender) Close(ctx context.Context) error {
	if err := s.sender.Close(ctx); err != nil {
		return fmt.Errorf("queue: close sender for %q: %w", s.queue, err)
	}
	return nil
}

func toSDK(m Outgoing) *azservicebus.Message {
	id, ct := m.ID, ContentTypeJSON
	msg := &azservicebus.Message{Body: m.Body, MessageID: &id, ContentType: &ct}
	if m.Subject != "" {
		subject := m.Subject
		msg.Subject = &subject
	}
	return msg
}
