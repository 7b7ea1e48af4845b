package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// hashID returns prefix + the first 12 hex digits of sha256(key).
func hashID(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + hex.EncodeToString(sum[:])[:12]
}

// PortalRunID is the run of a portal message: "p-" + a hash of its
// MessageID and enqueue time, which redeliveries share and a later re-send
// with the same MessageID does not. Without a MessageID (Service Bus always
// sets one) the body stands in.
func PortalRunID(messageID string, body []byte, enqueued time.Time) string {
	key := messageID
	if key == "" {
		key = string(body)
	}
	if !enqueued.IsZero() {
		key += "@" + enqueued.UTC().Format(time.RFC3339Nano)
	}
	return hashID("p-", key)
}

// EventRunID is the run of an ImagePushed event for repo: "e-" + a hash of
// the event id and the repository, so that redeliveries share a run and two
// events sharing an id (a replay tool, a hand-made event) never do. Without
// an event id the MessageID, then the body, stand in.
func EventRunID(eventID, messageID string, body []byte, repo string) string {
	key := eventID
	if key == "" {
		key = messageID
	}
	if key == "" {
		key = string(body)
	}
	return hashID("e-", key+"\x00"+repo)
}
