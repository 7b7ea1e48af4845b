package queue

import (
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"eventgrid-imagepushed.json", "cloudevents-imagepushed.json", "eventgrid-imagedeleted.json", "portal-servicebus-explorer.json", "own-continuation.json"} {
		f.Add(fixture(f, name))
	}
	for _, s := range []string{
		`{"repository":"a"}`, `{"repositories":["a","a/b"],"dryRun":true}`, `[{"specversion":"1.0","type":"x"}]`,
		`{"version":1,"runId":"r","batch":1,"batches":1,"trigger":"push","repositories":["a"],"resume":{"n":1,"cursors":{"a":{"k":[1,"<&>",null]}}}}`,
		`{"registry":"x"}`, `"x"`, `[]`, `{"a":1,"a":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Decode(body)
		if err != nil {
			if !IsReject(err) {
				t.Fatalf("error is not a RejectError: %v", err)
			}
			return
		}
		for _, r := range d.Repositories {
			if ValidateRepositoryName(r) != nil {
				t.Fatalf("accepted invalid repository %q", r)
			}
		}
		switch d.Kind {
		case KindOwn:
			enc, err := d.Own.Encode()
			if err != nil {
				t.Fatalf("accepted own message does not encode: %v", err)
			}
			again, err := Decode(enc)
			if err != nil {
				t.Fatalf("re-encoded message rejected: %v\n%s", err, enc)
			}
			if !reflect.DeepEqual(again, d) {
				t.Fatalf("round trip changed the message:\n got %s\nwant %s", show(again), show(d))
			}
			if len(d.Own.MessageID()) > MaxMessageIDLength {
				t.Fatalf("message id too long: %q", d.Own.MessageID())
			}
		case KindPortal:
			if len(d.Repositories) == 0 {
				t.Fatal("portal message without repositories")
			}
		case KindEvent:
			if d.Event == nil || len(d.Repositories) != 1 || d.Repositories[0] != d.Event.Repository {
				t.Fatalf("event decoded inconsistently: %s", show(d))
			}
		case KindIgnored:
			if d.Ignored == "" {
				t.Fatal("ignored without a reason")
			}
		default:
			t.Fatalf("kind %v", d.Kind)
		}
	})
}
