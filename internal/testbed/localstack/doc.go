// Package localstack is `handler local`: the whole of acrpurge on one
// machine, with no Azure account.
//
// It starts the ACR emulator (internal/testbed/acremu, in ABAC mode) seeded with a
// demo registry (see Seed and DemoPolicy), serves the real Functions app
// (app.New + App.HTTPHandler, the code `handler serve` runs) on a loopback
// listener, and plays the Functions host and Service Bus in between:
//
//   - the timer trigger fires the Scheduler (funchost.TimerRequest);
//   - an in-process queue stands in for Service Bus: it is the app's
//     queue.Sender, drops repeated MessageIDs (duplicate detection), and
//     delivers every message to the Worker over the custom-handler protocol
//     (funchost.ServiceBusRequest: body JSON-encoded twice, DeliveryCount as a
//     string, MessageId, EnqueuedTimeUtc), up to MaxConcurrentCalls at a time;
//     a non-2xx answer makes it deliver the message again with DeliveryCount
//     one higher, after a short backoff, until MaxDeliveries, after which the
//     message is dead-lettered;
//   - --push pushes an image into the emulator and delivers the Event Grid
//     ImagePushed event the registry's subscription would route to the queue;
//     --send delivers a message as an operator sends it from the portal.
//
// Checkpoints are kept in memory, or in Table Storage (Azurite) when the
// CheckpointStorage setting holds a connection string. At the end the runs
// are reported with internal/runs, together with the registry's totals
// before and after, and each run's HTML page (the Runs function's
// ?format=html) is written to a file (Options.HTMLDir, --html-dir). HostFront
// plays the host's HTTP front for the Runs function, so that a browser can
// be pointed at /api/runs while the stack runs (Options.Browse).
//
// RunStack does all of that and returns the data (for the CLI, tests and
// benchmarks); Run is the command line around it.
package localstack
