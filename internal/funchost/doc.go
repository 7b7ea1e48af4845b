// Package funchost speaks the Azure Functions custom-handler protocol.
//
// Server side: the Functions host POSTs {"Data":{…},"Metadata":{…}} to
// /{FunctionName} and reads {"Outputs":{…},"Logs":[…],"ReturnValue":…};
// any non-2xx status is a failed invocation. NewServer routes invocations to
// handlers; Request decodes bindings tolerantly, because the host encodes
// them in several ways (a JSON object, a JSON string, a string JSON-encoded
// twice, base64 bytes, numbers rendered as strings).
//
// Client side: ServiceBusRequest, TimerRequest, HTTPTriggerRequest and
// Invoke build and send exactly what the host sends, for the local host
// stand-in and for end-to-end tests.
package funchost
