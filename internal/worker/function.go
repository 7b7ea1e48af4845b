package worker

import (
	"context"

	"github.com/acrpurge/acrpurge/internal/funchost"
)

// Name is the function's name (its folder under functions/), and
// BindingMessage the name of its Service Bus trigger binding.
const (
	Name           = "Worker"
	BindingMessage = "msg"
)

// Invoke hands one Service Bus message sent by the Functions host to
// Handle, with MessageId, DeliveryCount and EnqueuedTimeUtc from the trigger
// metadata. An error (a non-2xx answer) makes Service Bus deliver the
// message again.
func (w *Worker) Invoke(ctx context.Context, req *funchost.Request) (*funchost.Response, error) {
	d := Delivery{MessageID: req.MetaString("MessageId")}
	if n, ok := req.MetaInt("DeliveryCount"); ok {
		d.DeliveryCount = n
	}
	if t, ok := req.MetaTime("EnqueuedTimeUtc"); ok {
		d.EnqueuedAt = t
	}
	body, err := req.Payload(BindingMessage)
	if err != nil {
		// An empty body is recorded as a rejection by Handle.
		w.log.Warn("message binding unreadable", "messageId", d.MessageID, "err", err)
	}
	d.Body = body
	out, err := w.Handle(ctx, d)
	if err != nil {
		return nil, err
	}
	return &funchost.Response{Logs: []string{out.Summary}}, nil
}
