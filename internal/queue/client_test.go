package queue

import (
	"context"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

type fakeCred struct{}

func (fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, nil
}

func TestNewServiceBusClient(t *testing.T) {
	const secret = "c2VjcmV0LXNoYXJlZC1hY2Nlc3Mta2V5LXZhbHVl"
	good := "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=" + secret
	c, err := NewServiceBusClient(good, "", nil)
	if err != nil || c == nil {
		t.Fatalf("connection string: %v", err)
	}
	// No broker is reached before the first send: a sender can be made and closed.
	s, err := NewServiceBusSender(c, "acr-purge", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	for _, ns := range []string{"contoso.servicebus.windows.net", "sb://contoso.servicebus.windows.net/", "https://contoso.servicebus.windows.net"} {
		if c, err := NewServiceBusClient("", ns, fakeCred{}); err != nil || c == nil {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}

	bad := []struct{ conn, ns, want string }{
		{"Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKey=" + secret, "", "connection string"},
		{"SharedAccessKey" + secret, "", "connection string"},
		{good, "contoso.servicebus.windows.net", "not both"},
		{"", "contoso.servicebus.windows.net", "credential"},
		{"", "", "no Service Bus"},
	}
	for _, b := range bad {
		var cred azcore.TokenCredential
		if b.want != "credential" {
			cred = fakeCred{}
		}
		_, err := NewServiceBusClient(b.conn, b.ns, cred)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q/%q: %v, want %q", b.conn, b.ns, err, b.want)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the key: %v", err)
		}
	}
	if _, err := NewServiceBusClient("", "contoso.servicebus.windows.net/queue?x", fakeCred{}); err == nil {
		t.Error("namespace with a path accepted")
	}
	if _, err := NewServiceBusSender(nil, "q", nil); err == nil {
		t.Error("nil client accepted")
	}
}
