package h1

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
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

// ReadFull reads exactly n bytes, in any segments, and allocates before
// reading no more than firstBodyBuffer whatever n is.
func TestReadFull(t *testing.T) {
	for _, n := range []int{0, 1, 100, firstBodyBuffer, firstBodyBuffer + 1, 5*firstBodyBuffer + 7} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i)
		}
		got, err := ReadFull(iotest.OneByteReader(bytes.NewReader(src)), n)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d: %d bytes, %v", n, len(got), err)
		}
		got, err = ReadFull(iotest.HalfReader(bytes.NewReader(src)), n)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d (halves): %d bytes, %v", n, len(got), err)
		}
	}
	if _, err := ReadFull(strings.NewReader("abc"), 4); err != io.ErrUnexpectedEOF {
		t.Fatalf("short body: %v", err)
	}
	// A body announced as 8 MiB of which one byte came: the memory held is
	// the first buffer, not the announced length.
	allocs := testing.AllocsPerRun(1, func() { _, _ = ReadFull(strings.NewReader("x"), 8<<20) })
	var ms1, ms2 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	_, _ = ReadFull(strings.NewReader("x"), 8<<20)
	runtime.ReadMemStats(&ms2)
	if grew := ms2.TotalAlloc - ms1.TotalAlloc; grew > 2*firstBodyBuffer {
		t.Fatalf("an 8 MiB body of 1 byte allocated %d bytes (%v allocations)", grew, allocs)
	}
}

// The rest of an answer refers to the pieces it was given, from where the
// socket stopped, and copies only what is left of the head (or a small
// rest); joined, it is what was not written.
func TestRestOf(t *testing.T) {
	head := []byte("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n")
	pieces := [][]byte{[]byte("0123456789"), bytes.Repeat([]byte("a"), 10000), []byte("xyz")}
	buf := append(append([]byte{}, head...), bytes.Join(pieces, nil)...)
	for _, n := range []int{0, 5, len(head), len(head) + 3, len(head) + 10, len(head) + 4000, len(buf) - 3000} {
		rest, held := restOf(buf, len(head), n, func() [][]byte { return pieces })
		if got := bytes.Join(rest, nil); !bytes.Equal(got, buf[n:]) {
			t.Fatalf("n=%d: the rest is %d bytes, want %d", n, len(got), len(buf)-n)
		}
		if len(buf)-n >= 4096 && held > int64(len(head))+10*sliceHeader {
			t.Fatalf("n=%d: the rest of %d bytes holds %d bytes", n, len(buf)-n, held)
		}
	}
	rest, held := restOf(buf, len(head), 7, nil) // no pieces: a copy
	if !bytes.Equal(bytes.Join(rest, nil), buf[7:]) || held != int64(len(buf)-7) {
		t.Fatalf("without pieces: %d bytes held", held)
	}
}
