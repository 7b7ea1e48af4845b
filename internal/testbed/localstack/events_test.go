package localstack

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/queue"
)

func TestSplitRefAndPushEvent(t *testing.T) {
	for ref, want := range map[string][2]string{
		"team-a/api:ci-1": {"team-a/api", "ci-1"},
		"a:b:c":           {"a:b", "c"},
		"noColon":         {},
		":tag":            {},
		"repo:":           {},
	} {
		repo, tag, ok := splitRef(ref)
		assert.Equal(t, want[0] != "", ok, ref)
		assert.Equal(t, want, [2]string{repo, tag}, ref)
	}
	for _, ce := range []bool{false, true} {
		body := pushEvent(ce, "9a3c1d2e-0001", "127.0.0.1:5000", "team-a/api", "ci-1",
			"sha256:9f2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809",
			"application/vnd.oci.image.manifest.v1+json", 1234, time.Now())
		d, err := queue.Decode(body)
		require.NoError(t, err, string(body))
		require.Equal(t, queue.KindEvent, d.Kind)
		assert.Equal(t, "team-a/api", d.Event.Repository)
		assert.Equal(t, "ci-1", d.Event.Tag)
		assert.Equal(t, "127.0.0.1:5000", d.Event.Host)
		assert.Equal(t, "9a3c1d2e-0001", d.Event.ID)
		want := queue.SchemaEventGrid
		if ce {
			want = queue.SchemaCloudEvents
		}
		assert.Equal(t, want, d.Event.Schema)
	}
}

func TestFormatInvocation(t *testing.T) {
	line := FormatInvocation(Invocation{Function: "Worker", MessageID: "s-20250304T020000Z/1", DeliveryCount: 2, Status: 200,
		Summary: "run s-20250304T020000Z batch 1: 3 repositories (3 done); deleted 8 tags, 20 manifests, 2621440 bytes", Duration: 29 * time.Millisecond})
	assert.Regexp(t, `^  Worker\s+s-20250304T020000Z/1\s+delivery 2\s+ok\s+29ms\s+3 repositories \(3 done\); deleted 8 tags, 20 manifests, 2\.5 MiB$`, line)
	line = FormatInvocation(Invocation{Function: "Worker", MessageID: "0d3f6a4e-5b1c-4c2e-9a43-2f1e5d6c7b8a", DeliveryCount: 5, Status: 500,
		Summary: "1 of 3 repositories failed transiently", DeadLettered: true})
	assert.Contains(t, line, "0d3f6a4e-5b1c-4c2e-...")
	assert.Contains(t, line, "failed")
	assert.Contains(t, line, "dead-lettered after 5 deliveries")
	line = FormatInvocation(Invocation{Function: "Scheduler", DeliveryCount: 2, Status: 500, Summary: "catalog: 503", Redelivered: true})
	assert.Regexp(t, `^  Scheduler\s+timer\s+retry 1\s+failed .* catalog: 503 -> retried$`, line)
}
