package queue

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/acrpurge/acrpurge/internal/acr"
)

// eventData is the part of the ACR event data object the Worker reads.
type eventData struct {
	Target *struct {
		Repository *string `json:"repository"`
		Tag        *string `json:"tag"`
		Digest     *string `json:"digest"`
	} `json:"target"`
	Request *struct {
		Host *string `json:"host"`
	} `json:"request"`
}

// decodeEventGrid reads an Event Grid schema event: id, topic, subject,
// eventType, eventTime, data, dataVersion, metadataVersion.
func decodeEventGrid(fields map[string]json.RawMessage) (Decoded, error) {
	ev := Event{Schema: SchemaEventGrid}
	if err := stringField(fields, "eventType", &ev.Type, true); err != nil {
		return Decoded{}, err
	}
	if err := stringField(fields, "id", &ev.ID, false); err != nil {
		return Decoded{}, err
	}
	if err := timeField(fields, "eventTime", &ev.Time); err != nil {
		return Decoded{}, err
	}
	return finishEvent(ev, fields["data"], "data")
}

// decodeCloudEvents reads a CloudEvents 1.0 event (structured JSON mode):
// specversion, type, source, id, time, subject, data.
func decodeCloudEvent(fields map[string]json.RawMessage) (Decoded, error) {
	ev := Event{Schema: SchemaCloudEvents}
	var spec string
	if err := stringField(fields, "specversion", &spec, true); err != nil {
		return Decoded{}, err
	}
	if spec != "1.0" {
		return Decoded{}, rejectf("CloudEvents specversion %q is not supported (want \"1.0\")", spec)
	}
	if err := stringField(fields, "type", &ev.Type, true); err != nil {
		return Decoded{}, err
	}
	if err := stringField(fields, "id", &ev.ID, false); err != nil {
		return Decoded{}, err
	}
	if err := timeField(fields, "time", &ev.Time); err != nil {
		return Decoded{}, err
	}
	if _, ok := fields["data_base64"]; ok && ev.Type == EventTypeImagePushed {
		return Decoded{}, rejectf("CloudEvents data_base64 is not supported; expected a JSON data object")
	}
	return finishEvent(ev, fields["data"], "data")
}

func finishEvent(ev Event, data json.RawMessage, name string) (Decoded, error) {
	if len(ev.ID) > 256 {
		return Decoded{}, rejectf("event id is %d characters, longer than 256", len(ev.ID))
	}
	if ev.Type != EventTypeImagePushed {
		t := ev.Type
		if len(t) > 200 {
			t = t[:200] + "…"
		}
		return Decoded{Kind: KindIgnored, Event: &ev, Ignored: fmt.Sprintf("event type %q", t)}, nil
	}
	if data == nil || isNull(data) {
		return Decoded{}, rejectf("ImagePushed event has no %s", name)
	}
	var d eventData
	if err := json.Unmarshal(data, &d); err != nil {
		return Decoded{}, rejectf("ImagePushed event %s: %v", name, err)
	}
	if d.Target == nil || d.Target.Repository == nil {
		return Decoded{}, rejectf("ImagePushed event has no %s.target.repository", name)
	}
	ev.Repository = *d.Target.Repository
	if err := ValidateRepositoryName(ev.Repository); err != nil {
		return Decoded{}, rejectf("%s.target.repository %q: %v", name, ev.Repository, err)
	}
	if d.Target.Tag != nil {
		ev.Tag = *d.Target.Tag
		if ev.Tag != "" && !validTag(ev.Tag) {
			return Decoded{}, rejectf("%s.target.tag %q is not a valid tag", name, ev.Tag)
		}
	}
	if d.Target.Digest != nil {
		ev.Digest = *d.Target.Digest
		if ev.Digest != "" {
			if err := acr.ValidateDigest(ev.Digest); err != nil {
				return Decoded{}, rejectf("%s.target.digest %q is not a valid digest: %v", name, ev.Digest, err)
			}
		}
	}
	if d.Request != nil && d.Request.Host != nil {
		ev.Host = *d.Request.Host
		if ev.Host != "" && !validHost(ev.Host) {
			return Decoded{}, rejectf("%s.request.host %q is not a valid host name", name, ev.Host)
		}
	}
	return Decoded{Kind: KindEvent, Repositories: []string{ev.Repository}, Event: &ev}, nil
}

func stringField(fields map[string]json.RawMessage, name string, dst *string, required bool) error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		if required {
			return rejectf("event has no %s", name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return rejectf("event %s must be a string", name)
	}
	return nil
}

func timeField(fields map[string]json.RawMessage, name string, dst *time.Time) error {
	var s string
	if err := stringField(fields, name, &s, false); err != nil || s == "" {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return rejectf("event %s %q is not an RFC 3339 time", name, s)
	}
	*dst = t
	return nil
}

// validTag follows the OCI tag grammar [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func validTag(t string) bool {
	if len(t) == 0 || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		word := isAlnum(c) || (c >= 'A' && c <= 'Z') || c == '_'
		if !word && (i == 0 || (c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

// validHost accepts a host name with an optional port; nothing else.
func validHost(h string) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(isAlnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}
