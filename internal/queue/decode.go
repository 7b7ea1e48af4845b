package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// MaxBodyBytes is the largest message body Decode accepts (the Service Bus
// Standard tier limit).
const MaxBodyBytes = 256 << 10

// Kind classifies a decoded message.
type Kind int

// Kinds of message.
const (
	KindOwn     Kind = iota + 1 // Message written by acrpurge
	KindPortal                  // {"repositories":[…]} or {"repository":"…"} from an operator
	KindEvent                   // Event Grid / CloudEvents ImagePushed
	KindIgnored                 // a well-formed event of another type: complete it, do nothing
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindOwn:
		return "own"
	case KindPortal:
		return "portal"
	case KindEvent:
		return "event"
	case KindIgnored:
		return "ignored"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event types and schemas.
const (
	EventTypeImagePushed = "Microsoft.ContainerRegistry.ImagePushed"
	SchemaEventGrid      = "eventgrid"
	SchemaCloudEvents    = "cloudevents"
)

// Event is the part of an ImagePushed event the Worker uses.
type Event struct {
	ID, Type, Schema string // Schema is SchemaEventGrid or SchemaCloudEvents
	Time             time.Time
	// Repository, Tag and Digest come from data.target; Host from
	// data.request.host. Host is informational: the Worker compares it with
	// its configured login server and ignores events from other registries;
	// it never connects to it.
	Repository, Tag, Digest, Host string
}

// Decoded is a classified, validated message.
type Decoded struct {
	Kind Kind
	// Own is the message for KindOwn.
	Own *Message
	// Repositories: for KindPortal deduplicated in order of appearance, for
	// KindEvent the one pushed repository, for KindOwn a copy of
	// Own.Repositories.
	Repositories []string
	// DryRun: the sender asked for a report only (KindPortal, KindOwn). It
	// can only narrow: false means "as configured", never "force deletes".
	DryRun bool
	// Event is the event for KindEvent (and, when it could be read, for
	// KindIgnored).
	Event *Event
	// Ignored says why a KindIgnored message needs no work.
	Ignored string
}

// Fields of the own and portal shapes.
var (
	ownFields    = map[string]bool{"version": true, "runId": true, "batch": true, "batches": true, "trigger": true, "repositories": true, "dryRun": true, "resume": true}
	ownMarkers   = []string{"version", "runId", "batch", "batches", "trigger", "resume"}
	portalFields = map[string]bool{"repositories": true, "repository": true, "dryRun": true}
	resumeFields = map[string]bool{"n": true, "cursors": true}
)

// Decode classifies and validates a message body. Errors are *RejectError:
// malformed JSON, unknown shape, unknown or forbidden fields (anything naming
// a registry, login server, host, endpoint or URL), invalid repository names,
// version other than 1, empty repository list, batch/batches out of range,
// bodies larger than MaxBodyBytes. A well-formed event of another type than
// ImagePushed is KindIgnored, not an error. An event body may be one event or
// an array of exactly one.
func Decode(body []byte) (Decoded, error) {
	if len(body) > MaxBodyBytes {
		return Decoded{}, rejectf("body is %d bytes, more than %d", len(body), MaxBodyBytes)
	}
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")) // UTF-8 BOM from editors
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Decoded{}, rejectf("body is empty")
	}
	if !json.Valid(body) {
		return Decoded{}, rejectf("body is not valid JSON")
	}
	switch body[0] {
	case '{':
		return decodeObject(body, false)
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return Decoded{}, rejectf("body array: %v", err)
		}
		if len(items) != 1 {
			return Decoded{}, rejectf("body is an array of %d items; only an array of exactly one event is accepted", len(items))
		}
		item := bytes.TrimSpace(items[0])
		if len(item) == 0 || item[0] != '{' {
			return Decoded{}, rejectf("body array item is not a JSON object")
		}
		return decodeObject(item, true)
	case '"':
		return Decoded{}, rejectf("body is a JSON string, expected a JSON object")
	default:
		return Decoded{}, rejectf("body is a JSON %s, expected a JSON object", jsonKind(body[0]))
	}
}

func jsonKind(c byte) string {
	switch c {
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func decodeObject(raw []byte, inArray bool) (Decoded, error) {
	fields, order, err := objectFields(raw)
	if err != nil {
		return Decoded{}, rejectf("body: %v", err)
	}
	switch {
	case has(fields, "specversion"):
		return decodeCloudEvent(fields)
	case has(fields, "eventType"):
		return decodeEventGrid(fields)
	}
	if inArray {
		return Decoded{}, rejectf("an array body must hold one Event Grid or CloudEvents event (fields: %s)", fieldList(order))
	}
	for _, k := range ownMarkers {
		if has(fields, k) {
			return decodeOwn(raw, fields, order)
		}
	}
	if has(fields, "repositories") || has(fields, "repository") {
		return decodePortal(fields, order)
	}
	for _, k := range order {
		if forbiddenField(k) {
			return Decoded{}, forbiddenReason(k)
		}
	}
	return Decoded{}, rejectf("unknown message shape (fields: %s): expected an acrpurge message, {\"repositories\":[…]}, or an ImagePushed event", fieldList(order))
}

func has(fields map[string]json.RawMessage, k string) bool {
	_, ok := fields[k]
	return ok
}

func decodeOwn(raw []byte, fields map[string]json.RawMessage, order []string) (Decoded, error) {
	if err := checkFields(order, ownFields, "acrpurge"); err != nil {
		return Decoded{}, err
	}
	if r, ok := fields["resume"]; ok && !isNull(r) {
		rf, rorder, err := objectFields(r)
		if err != nil {
			return Decoded{}, rejectf("resume: %v", err)
		}
		if err := checkFields(rorder, resumeFields, "resume"); err != nil {
			return Decoded{}, err
		}
		if c, ok := rf["cursors"]; ok && !isNull(c) {
			if _, _, err := objectFields(c); err != nil {
				return Decoded{}, rejectf("resume.cursors: %v", err)
			}
		}
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return Decoded{}, rejectf("acrpurge message: %v", err)
	}
	if m.Resume != nil {
		if len(m.Resume.Cursors) == 0 {
			m.Resume.Cursors = nil
		}
		for k, c := range m.Resume.Cursors {
			var buf bytes.Buffer
			if err := json.Compact(&buf, c); err != nil {
				return Decoded{}, rejectf("resume cursor for %q: %v", k, err)
			}
			m.Resume.Cursors[k] = buf.Bytes()
		}
	}
	if err := m.Validate(); err != nil {
		return Decoded{}, err
	}
	return Decoded{
		Kind:         KindOwn,
		Own:          &m,
		Repositories: append([]string(nil), m.Repositories...),
		DryRun:       m.DryRun,
	}, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func decodePortal(fields map[string]json.RawMessage, order []string) (Decoded, error) {
	if err := checkFields(order, portalFields, "portal"); err != nil {
		return Decoded{}, err
	}
	_, hasList := fields["repositories"]
	_, hasOne := fields["repository"]
	if hasList && hasOne {
		return Decoded{}, rejectf("use either \"repositories\" or \"repository\", not both")
	}
	var repos []string
	if hasOne {
		var r string
		if err := json.Unmarshal(fields["repository"], &r); err != nil || isNull(fields["repository"]) {
			return Decoded{}, rejectf("repository must be a string")
		}
		repos = []string{r}
	} else {
		if isNull(fields["repositories"]) {
			return Decoded{}, rejectf("repositories is null")
		}
		if err := json.Unmarshal(fields["repositories"], &repos); err != nil {
			return Decoded{}, rejectf("repositories must be an array of strings")
		}
	}
	var dryRun bool
	if d, ok := fields["dryRun"]; ok && !isNull(d) {
		if err := json.Unmarshal(d, &dryRun); err != nil {
			return Decoded{}, rejectf("dryRun must be true or false")
		}
	}
	if len(repos) == 0 {
		return Decoded{}, rejectf("repositories is empty")
	}
	if len(repos) > MaxRepositories {
		return Decoded{}, rejectf("%d repositories, more than %d: send several messages", len(repos), MaxRepositories)
	}
	out := make([]string, 0, len(repos))
	seen := make(map[string]bool, len(repos))
	for i, r := range repos {
		if err := ValidateRepositoryName(r); err != nil {
			if hasOne {
				return Decoded{}, rejectf("repository %q: %v", r, err)
			}
			return Decoded{}, rejectf("repositories[%d] %q: %v", i, r, err)
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return Decoded{Kind: KindPortal, Repositories: out, DryRun: dryRun}, nil
}
