// Package testwait is the bounded wait that tests use where a sleep would
// be a guess: look at a condition every few milliseconds until it holds,
// and fail the test, naming what it waited for, once a bound has passed.
package testwait

import (
	"testing"
	"time"
)

// interval is how often For looks again.
const interval = 2 * time.Millisecond

// For calls cond every few milliseconds until it reports true; once bound
// has passed without that, it fails t with "timed out waiting for what"
// (t.Fatalf: call it from the test's goroutine).
func For(t testing.TB, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s after %v", what, bound)
		}
		<-tick.C
	}
}

// Recv returns what ch yields; once bound has passed without a value, it
// fails t with "what: nothing within bound" (t.Fatalf: call it from the
// test's goroutine).
func Recv[T any](t testing.TB, ch <-chan T, what string, bound time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("%s: nothing within %v", what, bound)
		var zero T
		return zero
	}
}
