package h1

import (
	"net"
	"testing"
	"time"
)

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.set = append(c.set, t)
	return nil
}

// The idle deadline is re-armed only when the armed one falls short of the
// idle timeout by more than the slack, or is another kind of deadline.
func TestReadDeadline(t *testing.T) {
	const idle = 10 * time.Second // slack 100 ms
	c := &deadlineConn{}
	var rd readDeadline
	rd.idle(c, idle)
	if len(c.set) != 1 || time.Until(c.set[0]) < idle-time.Second {
		t.Fatalf("first wait: %v", c.set)
	}
	rd.idle(c, idle)
	if len(c.set) != 1 {
		t.Fatalf("armed again right away: %v", c.set)
	}
	rd.until = time.Now().Add(idle - 200*time.Millisecond) // armed 200 ms ago
	rd.idle(c, idle)
	if len(c.set) != 2 || time.Until(c.set[1]) < idle-time.Second {
		t.Fatalf("an idle deadline short by more than the slack was kept: %v", c.set)
	}
	rd.set(c, time.Now().Add(idle)) // e.g. a body's deadline, however long
	rd.idle(c, idle)
	if len(c.set) != 4 {
		t.Fatalf("the idle wait kept a deadline that is not an idle one: %v", c.set)
	}
	rd.idle(c, 2*idle) // a longer idle timeout than the one armed
	if len(c.set) != 5 {
		t.Fatalf("a longer idle timeout kept the shorter deadline: %v", c.set)
	}
}
