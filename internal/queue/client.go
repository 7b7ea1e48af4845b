package queue

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// NewServiceBusClient builds a client from a connection string
// (ServiceBusConnection) or from a fully qualified namespace
// (ServiceBusConnection__fullyQualifiedNamespace) and a credential. Exactly
// one of connString and namespace must be set. Errors never contain the
// connection string.
func NewServiceBusClient(connString, namespace string, cred azcore.TokenCredential) (*azservicebus.Client, error) {
	switch {
	case connString != "" && namespace != "":
		return nil, errors.New("queue: set either a Service Bus connection string or a namespace, not both")
	case connString != "":
		c, err := azservicebus.NewClientFromConnectionString(connString, nil)
		if err != nil {
			// The SDK's parse errors name keys, not values; do not add the string.
			return nil, fmt.Errorf("queue: Service Bus connection string: %w", err)
		}
		return c, nil
	case namespace != "":
		if cred == nil {
			return nil, errors.New("queue: a Service Bus namespace needs a credential")
		}
		ns := strings.TrimSuffix(namespace, "/")
		for _, p := range []string{"sb://", "https://", "amqps://"} {
			ns = strings.TrimPrefix(ns, p)
		}
		if ns == "" || strings.ContainsAny(ns, "/?#@ ") {
			return nil, fmt.Errorf("queue: Service Bus namespace %q is not a host name such as contoso.servicebus.windows.net", namespace)
		}
		c, err := azservicebus.NewClient(ns, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("queue: Service Bus client for %q: %w", ns, err)
		}
		return c, nil
	default:
		return nil, errors.New("queue: no Service Bus connection string or namespace configured")
	}
}
