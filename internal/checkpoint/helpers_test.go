package checkpoint_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// Small assertion helpers on the standard library (testify's dependencies
// are not in go.sum).

func msg(extra []any) string {
	if len(extra) == 0 {
		return ""
	}
	if f, ok := extra[0].(string); ok {
		return ": " + fmt.Sprintf(f, extra[1:]...)
	}
	return ": " + fmt.Sprint(extra...)
}

func must(t testing.TB, err error, extra ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error%s: %v", msg(extra), err)
	}
}

func mustTrue(t testing.TB, cond bool, extra ...any) {
	t.Helper()
	if !cond {
		t.Fatalf("condition failed%s", msg(extra))
	}
}

func checkTrue(t testing.TB, cond bool, extra ...any) {
	t.Helper()
	if !cond {
		t.Errorf("condition failed%s", msg(extra))
	}
}

func mustEqual[T any](t testing.TB, want, got T, extra ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("not equal%s\nwant: %+v\n got: %+v", msg(extra), want, got)
	}
}

func checkEqual[T any](t testing.TB, want, got T, extra ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Errorf("not equal%s\nwant: %+v\n got: %+v", msg(extra), want, got)
	}
}

func checkErrorIs(t testing.TB, err, target error, extra ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error%s: got %v, want one wrapping %v", msg(extra), err, target)
	}
}

func mustLen(t testing.TB, v any, n int, extra ...any) {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		t.Fatalf("length%s: got %d, want %d", msg(extra), l, n)
	}
}

func checkLen(t testing.TB, v any, n int, extra ...any) {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		t.Errorf("length%s: got %d, want %d", msg(extra), l, n)
	}
}
