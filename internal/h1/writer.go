package h1

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// skipHeaders are written by Start itself, or must not be copied.
var skipHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Transfer-Encoding": true,
	"Connection": true, "Date": true, "Keep-Alive": true,
}

// HeaderLines renders the headers of h that Start does not write itself,
// each as "\r\nName: value", for Start's header argument: once, when the
// headers are known, rather than per answer.
func HeaderLines(h http.Header) []byte {
	var b []byte
	for k, vs := range h {
		if skipHeaders[k] {
			continue
		}
		for _, v := range vs {
			b = AppendHeader(b, k, v)
		}
	}
	return b
}

// AppendHeader appends one header line, "\r\nName: value", to b.
func AppendHeader(b []byte, name, value string) []byte {
	return append(append(append(append(b, "\r\n"...), name...), ": "...), value...)
}

// dateLine caches the Date header value for the current second.
type dateLine struct {
	sec int64
	b   []byte
}

var lastDate atomic.Pointer[dateLine]

// appendDate appends now as an HTTP Date value, formatting at most once a
// second.
func appendDate(dst []byte, now time.Time) []byte {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return append(dst, d.b...)
	}
	d := &dateLine{sec, now.UTC().AppendFormat(nil, http.TimeFormat)}
	lastDate.Store(d)
	return append(dst, d.b...)
}

// Write writes an answer (Start and Finish) and reports whether the
// connection may serve another request; if not (draining, a write error,
// a client too slow for the unsent budget) it has closed it.
func (c *Conn) Write(status int, header, body []byte) (keep bool) {
	rest, closing := c.Start(status, header, body, nil)
	return c.Finish(rest, closing)
}

// Start writes what of an HTTP/1.1 answer the socket takes at once,
// without waiting: the status line, Date, the header lines (HeaderLines),
// "Connection: close" when the listener is draining, and for any status
// but 204 "Content-Type: application/json", Content-Length and body. It
// returns the rest, for Finish, and whether the connection is to close
// after it.
//
// The rest refers to pieces (when not nil: the body as pieces that stay
// valid and unchanged until Finish returns, such as messages shared with
// a mailbox) rather than to a copy of the body, so that a client that does
// not read holds only what is unsent of the head and the list of pieces.
// What rests allocate, over every connection, is bounded (MaxUnsent): a
// client whose rest does not fit is dropped (its connection closed at
// once, closing true), which loses nothing of a long poll: its messages
// wait in the mailbox until a later poll acknowledges them.
func (c *Conn) Start(status int, header, body []byte, pieces func() [][]byte) (rest net.Buffers, closing bool) {
	bp := bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		*bp = buf[:0]
		bufs.Put(bp)
	}()
	closing = c.l.draining()

	buf = append(buf, "HTTP/1.1 "...)
	buf = strconv.AppendInt(buf, int64(status), 10)
	buf = append(buf, ' ')
	buf = append(buf, http.StatusText(status)...)
	buf = append(buf, "\r\nDate: "...)
	buf = appendDate(buf, time.Now())
	buf = append(buf, header...)
	if closing {
		buf = append(buf, "\r\nConnection: close"...)
	}
	if status != http.StatusNoContent {
		buf = append(buf, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		buf = strconv.AppendInt(buf, int64(len(body)), 10)
	}
	buf = append(buf, "\r\n\r\n"...)
	head := len(buf)
	buf = append(buf, body...)
	n := writeNow(c.raw, buf)
	if n == len(buf) {
		return nil, closing
	}
	rest, held := restOf(buf, head, n, pieces)
	if !c.l.unsent.take(held) {
		c.l.dropped.Add(1)
		c.abort()
		return nil, true
	}
	c.held = held
	return rest, closing
}

// restOf is what of buf (head bytes of head and then the body) is left
// after n bytes went out: a copy of the unsent head, then the unsent body,
// taken from pieces when given (shared, not copied), else copied. held is
// what the rest allocates.
func restOf(buf []byte, head, n int, pieces func() [][]byte) (rest net.Buffers, held int64) {
	if pieces == nil || n >= head && len(buf)-n < 4096 {
		b := bytes.Clone(buf[n:])
		return net.Buffers{b}, int64(len(b))
	}
	if n < head {
		b := bytes.Clone(buf[n:head])
		rest, held = append(rest, b), int64(len(b))
		n = head
	}
	skip := n - head
	for _, p := range pieces() {
		switch {
		case skip >= len(p):
			skip -= len(p)
			continue
		case skip > 0:
			p, skip = p[skip:], 0
		}
		rest = append(rest, p)
	}
	return rest, held + int64(cap(rest))*sliceHeader
}

// sliceHeader is what one entry of a net.Buffers takes.
const sliceHeader = 24

// Finish writes rest, the part of an answer Start could not write at
// once, under the write timeout, and closes the connection if that fails
// or if closing. It reports whether the connection may serve another
// request.
func (c *Conn) Finish(rest net.Buffers, closing bool) (keep bool) {
	var werr error
	if len(rest) > 0 {
		// The deadline stays: the next slow write on this connection sets
		// its own, and a connection handed back to net/http is cleared first.
		_ = c.raw.SetWriteDeadline(time.Now().Add(c.l.t.Write))
		_, werr = rest.WriteTo(unwrap(c.raw))
		c.l.unsent.give(c.held)
		c.held = 0
	}
	switch {
	case werr != nil:
		c.l.dropped.Add(1)
		c.abort() // a client that does not read: drop what the kernel still holds for it too
		return false
	case closing:
		c.Close()
		return false
	}
	return true
}

// abort closes the connection with a reset, so that the kernel drops what
// it still holds to send (a client that does not read could keep it there
// indefinitely, by advertising a zero window).
func (c *Conn) abort() {
	if tc, ok := unwrap(c.raw).(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// unwrap returns the connection under the bytes read ahead of it: writes
// go straight to the socket (net.Buffers uses writev on a TCP socket).
func unwrap(conn net.Conn) net.Conn {
	if bc, ok := conn.(*bufferedConn); ok {
		return bc.Conn
	}
	return conn
}

// budget bounds the bytes that unsent rests of answers allocate, over
// every connection of a listener.
type budget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes; false, reserving nothing, when they do not fit.
func (b *budget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

// give returns n bytes.
func (b *budget) give(n int64) { b.used.Add(-n) }

// writeNow writes what of b fits into conn's socket buffer now, with one
// non-blocking write(2), and returns how much that was: all of it, nearly
// always, for an answer to a client that reads. It saves arming a write
// deadline (a runtime timer) per answer; the caller writes any rest under
// one. Anything but a TCP socket, and any error, returns 0: the caller's
// ordinary write then does the work or reports the error.
func writeNow(conn net.Conn, b []byte) (written int) {
	tc, ok := unwrap(conn).(*net.TCPConn)
	if !ok {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	// Control, unlike RawConn.Write, ignores an expired deadline left by
	// an earlier answer. A connection is written from one goroutine at a
	// time, so no other write interleaves.
	_ = rc.Control(func(fd uintptr) {
		for written < len(b) {
			n, err := syscall.Write(int(fd), b[written:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return
			}
			written += n
		}
	})
	return written
}
