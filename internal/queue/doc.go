// Package queue defines the Service Bus message contract of acrpurge: the
// messages the Scheduler and continuations write (Message), the messages an
// operator sends from the portal, and the Event Grid / CloudEvents
// ImagePushed events routed to the queue. Decode classifies and validates a
// body; anything it cannot trust is a *RejectError (a permanent failure the
// Worker records and completes). A message can narrow what the Worker does
// but never names the registry: fields that look like a registry, login
// server, host, endpoint or URL are rejected.
//
// The package also sends messages with azservicebus, splitting them into as
// many SDK message batches as needed.
package queue
