package api

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// Parked polls without a goroutine.
//
// A parked poll held in an ordinary handler keeps a goroutine with its stack
// and net/http's per-connection buffers: about 20 KiB. For plain HTTP/1.1
// the API instead parks the poll in the hub (Hub.Park) and takes the
// connection over (hijack): while parked it holds only the socket and a
// small record. When the poll is answered the response is written straight
// to the socket and the connection is handed back to the HTTP server
// through the Listener, which serves the client's next request on it.
// HTTP/2, TLS and "Connection: close" requests use the ordinary path.

// parkable reports whether r may take the goroutine-free path.
func (a *API) parkable(r *http.Request) bool {
	return a.cfg.Listener != nil && r.ProtoMajor == 1 && r.ProtoMinor == 1 && r.TLS == nil && !r.Close &&
		r.ContentLength == 0 && len(r.TransferEncoding) == 0 // an unread body would be read as the next request
}

// parkedKey marks, in the echo context, a request whose connection was
// taken over; its value is what the request log shows as the status
// ("parked", or the status written on the connection).
const parkedKey = "longpoll.parked"

// pollResult is the outcome of a parked poll.
type pollResult struct {
	msgs []poll.Message
	err  error
}

// parkedPoll is one poll parked in the hub. ready is closed once the
// handler has decided who answers: conn set means the poll's done callback
// writes the response; conn nil means the handler itself waits on result.
type parkedPoll struct {
	a      *API
	start  time.Time
	ready  chan struct{}
	conn   net.Conn
	header []byte // the response's extra header lines (headerLines)
	result chan pollResult
	after  func()    // runs when the poll is answered (per-IP accounting); again, it does nothing
	ip     string    // the client's address, if known (serveOwned)
	st     connState // what the connection carries to its next request (owned.go)
}

// dataParked serves a poll through Hub.Park. after (may be nil) runs once
// the poll has been answered, whichever way, or a panic has left.
func (a *API) dataParked(c echo.Context, id string, ack uint64, hasAck bool, hold time.Duration, after func()) error {
	p := &parkedPoll{a: a, start: time.Now(), ready: make(chan struct{}), result: make(chan pollResult, 1), after: after}
	// Counted before parking, so that a shutdown waiting for parked
	// connections cannot miss one that is being taken over right now.
	h := a.holdPoll(after)
	defer h.giveBack() // a panic on the way (the recover middleware's) too
	msgs, err, parked := a.hub.Park(&p.st.ticket, id, ack, hasAck, hold, p.done)
	if !parked {
		h.giveBack() // before the answer: the client may poll again at once
		a.observePoll(p.start, msgs, err, false)
		return a.writePoll(c, msgs, err)
	}
	h.pass()
	func() {
		defer close(p.ready) // done waits for it, whatever happens here
		conn, brw, herr := c.Response().Hijack()
		if herr != nil {
			a.cfg.Listener.release()
			return
		}
		p.conn = withBuffered(conn, brw.Reader)
		p.header = headerLines(c.Response().Header())
		c.Set(parkedKey, "parked")
	}()
	if p.conn != nil {
		return nil
	}
	r := <-p.result // bounded by the hold
	return a.writePoll(c, r.msgs, r.err)
}

// pollHold is what a poll holds until it is answered: the listener's hold
// (a shutdown waits for it) and the client's place under
// --max-parked-per-ip (after: nil when polls are uncapped; called again,
// it does nothing).
type pollHold struct {
	l     *Listener
	after func()
	held  bool
}

// holdPoll takes the listener's hold for a poll whose place is after.
func (a *API) holdPoll(after func()) pollHold {
	a.cfg.Listener.hold()
	return pollHold{l: a.cfg.Listener, after: after, held: true}
}

// slot gives the client's place back: before an answer goes out, since
// the client may poll again at once, on another connection too.
func (h *pollHold) slot() {
	if h.after != nil {
		h.after()
	}
}

// pass hands both to the parked poll, whose done gives them back.
func (h *pollHold) pass() { h.held = false }

// giveBack gives both back unless they were passed on or given back:
// deferred, it does so when a panic leaves too.
func (h *pollHold) giveBack() {
	if h.held {
		h.held = false
		h.l.release()
		h.slot()
	}
}

// done is the hub's callback: it answers the poll. What it returns hands
// the connection back to the server, after the answers of the same
// fan-out are written. An answer the socket cannot take at once (a client
// not reading) is finished on a goroutine of its own, so that it holds up
// neither the publisher nor the other answers of a fan-out.
func (p *parkedPoll) done(msgs []poll.Message, err error) func() {
	<-p.ready
	p.a.observePoll(p.start, msgs, err, false)
	if p.after != nil {
		p.after() // before the answer: the client may poll again at once, on another connection too
	}
	if p.conn == nil {
		p.result <- pollResult{msgs, err}
		return nil
	}
	_, rest, closing := p.a.startRaw(p.conn, p.header, msgs, err)
	then := func() {
		keep := p.a.finishAnswer(p.conn, rest, closing)
		switch {
		case keep && p.a.ownRepolls:
			go p.a.serveOwned(p.conn, p.ip, false, p.st) // owned.go: most likely a re-poll
		case keep:
			handBack(p.a.cfg.Listener, p.conn)
		}
		p.a.cfg.Listener.release()
	}
	if len(rest) > 0 {
		go then()
		return nil
	}
	return then
}

// writePoll writes a poll's answer through echo.
func (a *API) writePoll(c echo.Context, msgs []poll.Message, err error) error {
	switch {
	case err != nil:
		return err
	case len(msgs) == 0:
		return c.NoContent(http.StatusNoContent)
	}
	return c.JSONBlob(http.StatusOK, wire.AppendAnswer(make([]byte, 0, 512), msgs))
}

// observePoll reports an answered poll to the metrics.
func (a *API) observePoll(start time.Time, msgs []poll.Message, err error, gone bool) {
	if a.cfg.Polls != nil {
		now := time.Now()
		a.cfg.Polls.PollAnswered(now.Sub(start), pollOutcome(msgs, err, gone, a.hub.Closing()), msgs, now)
	}
}

var rawBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// skipHeaders are set by writeRaw itself, or must not be copied.
var skipHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Transfer-Encoding": true,
	"Connection": true, "Date": true, "Keep-Alive": true,
}

// headerLines renders the headers of h that writeRaw does not set itself,
// each as "\r\nName: value", once per parked poll rather than per write.
func headerLines(h http.Header) []byte {
	var b []byte
	for k, vs := range h {
		if skipHeaders[k] {
			continue
		}
		for _, v := range vs {
			b = append(append(append(append(b, "\r\n"...), k...), ": "...), v...)
		}
	}
	return b
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

// writeRaw writes the HTTP/1.1 response of a parked poll to conn. It
// reports whether conn may serve another request; if not (shutting down,
// write error) it has closed it. It returns the status it wrote. header
// holds the lines of the headers set before the poll parked (Cache-Control,
// CORS), from headerLines.
func (a *API) writeRaw(conn net.Conn, header []byte, msgs []poll.Message, err error) (status int, keep bool) {
	status, rest, closing := a.startRaw(conn, header, msgs, err)
	return status, a.finishAnswer(conn, rest, closing)
}

// startRaw is writeRaw up to what the socket takes at once (startAnswer).
func (a *API) startRaw(conn net.Conn, header []byte, msgs []poll.Message, err error) (status int, rest []byte, closing bool) {
	switch {
	case err != nil:
		status, extra, body := a.rawError(err, http.MethodGet, "/data", remoteIP(conn.RemoteAddr()))
		rest, closing = a.startAnswer(conn, status, append(extra, header...), body)
		return status, rest, closing
	case len(msgs) > 0:
		bp := rawBufs.Get().(*[]byte)
		defer rawBufs.Put(bp)
		*bp = wire.AppendAnswer((*bp)[:0], msgs)
		rest, closing = a.startAnswer(conn, http.StatusOK, header, *bp)
		return http.StatusOK, rest, closing
	}
	rest, closing = a.startAnswer(conn, http.StatusNoContent, header, nil)
	return http.StatusNoContent, rest, closing
}

// writeAnswer writes an HTTP/1.1 response to a connection the API has
// taken over: the status, Date, the header lines, and a JSON body (none for
// 204). It reports whether conn may serve another request; if not
// (shutting down: "Connection: close"; a write error) it has closed it.
func (a *API) writeAnswer(conn net.Conn, status int, header, body []byte) (keep bool) {
	rest, closing := a.startAnswer(conn, status, header, body)
	return a.finishAnswer(conn, rest, closing)
}

// startAnswer writes what of writeAnswer's response the socket takes at
// once, without waiting, and returns the rest (a copy; nil when all went
// out) and whether conn is to be closed after it (shutting down), for
// finishAnswer.
func (a *API) startAnswer(conn net.Conn, status int, header, body []byte) (rest []byte, closing bool) {
	bp := rawBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		*bp = buf[:0]
		rawBufs.Put(bp)
	}()
	closing = a.hub.Closing()

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
	buf = append(buf, body...)
	if n := writeNow(conn, buf); n < len(buf) {
		rest = bytes.Clone(buf[n:])
	}
	return rest, closing
}

// finishAnswer writes rest, the part of an answer the socket did not take
// at once, under a write deadline, and closes conn if that fails or if
// closing. It reports whether conn may serve another request.
func (a *API) finishAnswer(conn net.Conn, rest []byte, closing bool) (keep bool) {
	var werr error
	if len(rest) > 0 {
		// The deadline stays: the next slow write on this connection sets
		// its own, and a connection handed back to net/http is cleared first.
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, werr = conn.Write(rest)
	}
	if werr != nil || closing {
		conn.Close()
		return false
	}
	return true
}

// writeNow writes what of b fits into conn's socket buffer now, with one
// non-blocking write(2), and returns how much that was: all of it, nearly
// always, for an answer to a client that reads. It saves arming a write
// deadline (a runtime timer) per answer; the caller writes any rest under
// one. Anything but a TCP socket, and any error, returns 0: the caller's
// ordinary write then does the work or reports the error.
func writeNow(conn net.Conn, b []byte) (written int) {
	if bc, ok := conn.(*bufferedConn); ok {
		conn = bc.Conn
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	// Control, unlike RawConn.Write, ignores an expired deadline left by
	// an earlier answer. The API writes an owned connection from one
	// goroutine at a time, so no other write interleaves.
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

// takeOver answers c's request itself, writing status and the JSON body
// on the connection, and keeps the connection for the client's next
// request (serveOwned), when the request allows it: plain HTTP/1.1, not
// "Connection: close", with a body of known length already read. It
// reports false, having done nothing, otherwise.
func (a *API) takeOver(c echo.Context, status int, body []byte) bool {
	r := c.Request()
	if !a.ownRepolls || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.TLS != nil || r.Close ||
		r.ContentLength <= 0 || len(r.TransferEncoding) != 0 {
		return false
	}
	conn, brw, err := c.Response().Hijack()
	if err != nil {
		return false
	}
	conn = withBuffered(conn, brw.Reader)
	c.Set(parkedKey, status)
	if a.writeAnswer(conn, status, headerLines(c.Response().Header()), body) {
		go a.serveOwned(conn, "", r.Method == http.MethodPost, connState{})
	}
	return true
}

// bufferedConn is a connection with bytes the server had already read
// ahead (a pipelined request) in front of it.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// withBuffered keeps what r had buffered from conn, if anything.
func withBuffered(conn net.Conn, r *bufio.Reader) net.Conn {
	n := r.Buffered()
	if n == 0 {
		return conn
	}
	b, _ := r.Peek(n)
	front := bytes.NewReader(bytes.Clone(b))
	if bc, ok := conn.(*bufferedConn); ok {
		// Flatten: a client pipelining poll after poll must not grow a
		// chain of wrappers that every Read walks.
		return &bufferedConn{Conn: bc.Conn, r: io.MultiReader(front, bc.r)}
	}
	return &bufferedConn{Conn: conn, r: io.MultiReader(front, conn)}
}
