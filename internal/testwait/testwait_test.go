package testwait_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/testwait"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	testwait.For(t, "three looks", time.Second, func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Fatalf("looked %d times", n.Load())
	}
}

// fatal records a t.Fatalf instead of ending the test.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f)
}

func TestForFailsAfterTheBound(t *testing.T) {
	f := &fatal{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("recovered %v", r)
			}
		}()
		testwait.For(f, "nothing", 20*time.Millisecond, func() bool { return false })
	}()
	if f.msg == "" || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("For returned after %v with %q", time.Since(start), f.msg)
	}
}

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if v := testwait.Recv(t, ch, "seven", time.Second); v != 7 {
		t.Fatalf("got %d", v)
	}
	f := &fatal{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("recovered %v", r)
			}
		}()
		testwait.Recv(f, make(chan int), "nothing", 20*time.Millisecond)
	}()
	if f.msg == "" {
		t.Fatal("Recv returned from an empty channel")
	}
}
