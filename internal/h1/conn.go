package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is a connection taken over from net/http (Listener.Take). Its
// reads belong to one goroutine at a time: the reading loop (Next), or
// nobody while an answer is owed; its writes to whoever answers.
type Conn struct {
	l       *Listener
	raw     net.Conn
	pending []byte // bytes read ahead of the next request, to read first
	rd      readDeadline
	ip      string
	post    bool  // the last request had a body: skip a stray CRLF after it
	held    int64 // what the rest of the answer being written holds of the unsent budget

	closed     atomic.Bool  // closed by this side: serve reads no further request
	state      atomic.Int32 // stateIdle, stateParked, stateGone (park.go)
	gone       Goner        // told if a parked connection's peer goes (under l.mu)
	prev, next *Conn        // in l.parked (under l.mu)

	// Value is the Handler's own state for this connection, set when it
	// takes the connection over; h1 does not touch it.
	Value any
}

// maxHead bounds the request head read on a taken-over connection; a
// longer head goes to net/http, which applies its own limits.
const maxHead = 4096

// loop is what the reading loop of a connection uses while it runs: the
// read buffer and the request being served. It is pooled, so that a
// connection parked between requests holds neither.
type loop struct {
	br  *bufio.Reader
	req Request
}

var loops = sync.Pool{New: func() any { return &loop{br: bufio.NewReaderSize(nil, maxHead)} }}

// IP returns the address part of the peer's address.
func (c *Conn) IP() string {
	if c.ip == "" {
		s := c.raw.RemoteAddr().String()
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
		c.ip = s
	}
	return c.ip
}

// Close closes the connection. A request read ahead on it is not served.
func (c *Conn) Close() {
	c.closed.Store(true)
	c.raw.Close()
}

// Next serves the connection's next requests, on a goroutine of its own,
// until one is parked or passed, or the connection closes. afterBody says
// the request just answered had a body (a stray CRLF after it is skipped,
// as net/http does).
func (c *Conn) Next(afterBody bool) {
	c.post = afterBody
	go c.serve()
}

// HandBack gives the connection to net/http, bytes read ahead in front,
// without the write deadline of an earlier answer (net/http sets none when
// the server has no WriteTimeout).
func (c *Conn) HandBack() {
	nc := c.raw
	if len(c.pending) > 0 {
		nc = withFront(nc, c.pending)
		c.pending = nil
	}
	c.handBack(nc)
}

func (c *Conn) handBack(nc net.Conn) {
	_ = nc.SetDeadline(time.Time{})
	c.l.giveBack(nc)
}

// serve is the reading loop of Next.
func (c *Conn) serve() {
	l := c.l
	lp := loops.Get().(*loop)
	br := lp.br
	if len(c.pending) > 0 {
		br.Reset(io.MultiReader(bytes.NewReader(c.pending), c.raw))
		c.pending = nil
	} else {
		br.Reset(c.raw)
	}
	defer func() {
		br.Reset(nil)
		lp.req.c, lp.req.br = nil, nil
		loops.Put(lp)
	}()
	defer func() {
		if v := recover(); v != nil {
			if l.Logger != nil {
				l.Logger.Error("panic serving a taken-over connection", "err", v)
			}
			l.disown(c)
			c.raw.Close()
		}
	}()
	for {
		if !l.adopt(c) {
			c.raw.Close() // the listener is closed: shutting down
			return
		}
		if c.post {
			skipCRLF(c, br)
			c.post = false
		}
		head, ok, err := readHead(c, br)
		l.disown(c)
		if err != nil {
			c.raw.Close() // the client left or idled out; nothing was asked
			return
		}
		r := &lp.req
		r.c, r.br, r.read, r.bodyRead = c, br, false, false
		if ok {
			ok = parseHead(head, &r.Head)
		}
		if !ok || l.draining() {
			c.handBack(withBuffered(c.raw, br))
			return
		}
		r.headLen = len(head)
		switch l.Handler.ServeH1(r) {
		case Pass:
			if r.read { // a handler's mistake: the request cannot be replayed
				c.raw.Close()
				return
			}
			c.handBack(withBuffered(c.raw, br))
			return
		case Parked:
			return // the handler answers and calls Next or HandBack
		}
		if r.ContentLength > 0 && !r.bodyRead {
			c.Close() // an unread body would be read as the next request
			return
		}
		if c.closed.Load() {
			return // dropped while answering: what was read ahead is not served
		}
		r.consume()
		c.post = r.ContentLength > 0
	}
}

// Request is one request read on a taken-over connection: its Head, and
// the means to read its body and keep its connection.
type Request struct {
	Head
	c        *Conn
	br       *bufio.Reader
	headLen  int  // bytes of the head still in br
	read     bool // the head is consumed
	bodyRead bool // Body was called
}

// Conn returns the request's connection, to answer on.
func (r *Request) Conn() *Conn { return r.c }

// consume drops the head from the reader, once.
func (r *Request) consume() {
	if !r.read {
		_, _ = r.br.Discard(r.headLen)
		r.read = true
	}
}

// Body reads the request's body of ContentLength bytes (none without
// one), within the read timeout once it has to wait, into memory that
// grows as the body arrives (ReadFull). On a read error the
// connection is closed (the client left or stalled mid-body, as net/http
// would), and the handler answers nothing. Call it at most once, before
// Hold.
func (r *Request) Body() ([]byte, error) {
	r.consume()
	r.bodyRead = true
	if r.ContentLength <= 0 {
		return nil, nil
	}
	if r.br.Buffered() < r.ContentLength {
		r.c.rd.set(r.c.raw, time.Now().Add(r.c.l.t.Read))
	}
	body, err := ReadFull(r.br, r.ContentLength)
	if err != nil {
		r.c.Close()
		return nil, err
	}
	return body, nil
}

// Hold keeps the connection beyond ServeH1 (a parked poll): the bytes read
// ahead of the next request stay with it. Call it before anything may
// answer the request on another goroutine; if the handler then answers at
// once after all, Unhold undoes it and ServeH1 returns Served.
func (r *Request) Hold() {
	r.consume()
	if n := r.br.Buffered(); n > 0 {
		b, _ := r.br.Peek(n)
		r.c.pending = bytes.Clone(b)
	}
}

// Unhold undoes Hold: the reading loop goes on with what it has read ahead.
func (r *Request) Unhold() { r.c.pending = nil }

// readHead waits for the next request head on br: up to the idle timeout
// for its first byte (unless one is buffered), then up to the read-header
// timeout for the rest. It returns the head (valid until br is read
// again) or, when br's buffer fills without one or the line ends are not
// CRLF, ok false with everything read still buffered. A read error (the
// client left, a timeout, Close) is returned as err.
func readHead(c *Conn, br *bufio.Reader) (head []byte, ok bool, err error) {
	if br.Buffered() == 0 {
		c.rd.idle(c.raw, c.l.t.Idle)
		if _, err := br.Peek(1); err != nil {
			return nil, false, err
		}
	}
	deadline := false // set once the head needs more than one read
	for {
		n := br.Buffered()
		b, _ := br.Peek(n)
		if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
			if j := bytes.Index(b, []byte("\n\n")); j >= 0 && j < i {
				return nil, false, nil // bare LF: net/http decides
			}
			return b[:i+3], true, nil
		}
		if bytes.Contains(b, []byte("\n\n")) || n == br.Size() {
			return nil, false, nil
		}
		if !deadline {
			c.rd.set(c.raw, time.Now().Add(c.l.t.ReadHeader))
			deadline = true
		}
		if _, err := br.Peek(n + 1); err != nil && br.Buffered() == n {
			return nil, false, err
		}
	}
}

// skipCRLF drops up to four CR and LF bytes that old clients send after a
// POST body, as net/http does (RFC 9112 section 2.2): it waits, up to the
// idle timeout, for the first four bytes of the next request. A read
// error is left for readHead to meet.
func skipCRLF(c *Conn, br *bufio.Reader) {
	c.rd.idle(c.raw, c.l.t.Idle)
	b, _ := br.Peek(4)
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	_, _ = br.Discard(n)
}

// readDeadline is the read deadline last armed on a connection. Waiting
// for the next request re-arms the idle deadline only when the one armed
// has less than the idle timeout minus a slack left: arming a deadline
// updates a runtime timer, once per request otherwise.
type readDeadline struct {
	until  time.Time
	isIdle bool // until is an idle deadline
}

// idle bounds the wait for conn's next request by d from now, or by an
// idle deadline already armed that is at most min(d/100, 1s) shorter.
func (rd *readDeadline) idle(conn net.Conn, d time.Duration) {
	now := time.Now()
	if rd.isIdle && rd.until.Sub(now) >= d-min(d/100, time.Second) {
		return
	}
	rd.until, rd.isIdle = now.Add(d), true
	_ = conn.SetReadDeadline(rd.until)
}

// set arms conn's read deadline at t, for anything but the idle wait.
func (rd *readDeadline) set(conn net.Conn, t time.Time) {
	rd.until, rd.isIdle = t, false
	_ = conn.SetReadDeadline(t)
}

// bufferedConn is a connection with bytes already read ahead (a pipelined
// request) in front of it.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// withBuffered keeps what br had buffered from conn, if anything.
func withBuffered(conn net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return conn
	}
	b, _ := br.Peek(n)
	return withFront(conn, bytes.Clone(b))
}

// withFront returns conn with front read first. A connection that already
// has bytes in front is not wrapped again: a client pipelining poll after
// poll must not grow a chain of wrappers that every Read walks
// (io.MultiReader flattens the nested readers).
func withFront(conn net.Conn, front []byte) net.Conn {
	r := bytes.NewReader(front)
	if bc, ok := conn.(*bufferedConn); ok {
		return &bufferedConn{Conn: bc.Conn, r: io.MultiReader(r, bc.r)}
	}
	return &bufferedConn{Conn: conn, r: io.MultiReader(r, conn)}
}

// firstBodyBuffer is how much of a body of known length is allocated
// before any of it has arrived; the buffer grows as the rest arrives.
const firstBodyBuffer = 64 << 10

// ReadFull reads exactly n bytes from r. Its memory grows with what
// arrives: a client that announces a large body and sends little of it
// costs what it sent (at most firstBodyBuffer before anything), not what
// it announced. A short read returns the error (io.ErrUnexpectedEOF when r
// ended early).
func ReadFull(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, firstBodyBuffer))
	for len(buf) < n {
		if len(buf) == cap(buf) { // double, up to n
			nb := make([]byte, len(buf), min(2*cap(buf), n))
			copy(nb, buf)
			buf = nb
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF && len(buf) < n {
				err = io.ErrUnexpectedEOF
			}
			if len(buf) == n {
				break
			}
			return nil, err
		}
	}
	return buf, nil
}
