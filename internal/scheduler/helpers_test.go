package scheduler_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/acrpurge/acrpurge/internal/checkpoint"
	"github.com/acrpurge/acrpurge/internal/policy"
	"github.com/acrpurge/acrpurge/internal/queue"
	"github.com/acrpurge/acrpurge/internal/testbed/azurite"
)

var errSend = errors.New("service bus unavailable")

// decodeAll decodes captured own messages, checking their MessageIDs.
func decodeAll(t *testing.T, sent []queue.Outgoing) []queue.Message {
	t.Helper()
	out := make([]queue.Message, 0, len(sent))
	for _, o := range sent {
		d, err := queue.Decode(o.Body)
		require.NoError(t, err)
		require.Equal(t, queue.KindOwn, d.Kind)
		require.Equal(t, d.Own.MessageID(), o.ID, "MessageID is runId/batch")
		out = append(out, *d.Own)
	}
	return out
}

// stores runs f against the in-memory store and Azurite's table store.
func stores(t *testing.T, f func(t *testing.T, store checkpoint.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, checkpoint.NewMemory()) })
	t.Run("table", func(t *testing.T) { f(t, azurite.NewTable(t)) })
}

func mustPolicy(t testing.TB, js string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(js))
	require.NoError(t, err)
	return p
}

// repoFunc is a Catalog that serves fixed pages.
type pages [][]string

func (p pages) Catalog(ctx context.Context, fn func([]string) error) error {
	for _, page := range p {
		if err := fn(page); err != nil {
			return err
		}
	}
	return nil
}
