package localstack

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/acrpurge/acrpurge/internal/funchost"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/fakebus"
	"github.com/acrpurge/acrpurge/internal/testbed/hostdriver"
)

// Invocation is one call the host stand-in made to the handler.
type Invocation = hostdriver.Invocation

// DeadLetter is a message that failed on every delivery.
type DeadLetter = fakebus.DeadLetter

// TimerRetries is how often a failed timer invocation is retried.
const TimerRetries = hostdriver.TimerRetries

// EventTopic is the Event Grid topic (the registry's resource ID) named by
// the demo's ImagePushed events.
const EventTopic = "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/acrpurge-local" +
	"/providers/Microsoft.ContainerRegistry/registries/local"

// pushEvent renders the ImagePushed event of a push of repo:tag (digest,
// mediaType, size) to the registry host, as the registry's Event Grid
// subscription delivers it to a Service Bus queue: in the Event Grid
// schema, or CloudEvents 1.0.
func pushEvent(cloudEvents bool, id, host, repo, tag, digest, mediaType string, size int64, at time.Time) []byte {
	data := map[string]any{
		"id": funchost.NewGUID(), "timestamp": at.UTC().Format(time.RFC3339Nano), "action": "push", "location": "local",
		"target": map[string]any{
			"mediaType": mediaType, "size": size, "digest": digest, "length": size,
			"repository": repo, "tag": tag,
		},
		"request": map[string]any{
			"id": funchost.NewGUID(), "host": host, "method": "PUT", "useragent": "acrpurge-local",
		},
	}
	subject := repo + ":" + tag
	var ev map[string]any
	if cloudEvents {
		ev = map[string]any{
			"specversion": "1.0", "id": id, "source": EventTopic, "subject": subject,
			"type": queue.EventTypeImagePushed, "time": at.UTC().Format(time.RFC3339Nano),
			"datacontenttype": "application/json", "data": data,
		}
	} else {
		ev = map[string]any{
			"id": id, "topic": EventTopic, "subject": subject, "eventType": queue.EventTypeImagePushed,
			"eventTime": at.UTC().Format(time.RFC3339Nano), "data": data, "dataVersion": "1.0", "metadataVersion": "1",
		}
	}
	b, _ := json.Marshal(ev) // maps of strings and numbers: cannot fail
	return b
}

// splitRef splits "repo:tag" at the last colon.
func splitRef(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndexByte(ref, ':')
	if i <= 0 || i == len(ref)-1 {
		return "", "", false
	}
	return ref[:i], ref[i+1:], true
}
