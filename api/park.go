package api

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/longpoll/longpoll/internal/h1"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// Parked polls without a goroutine.
//
// A poll held in an ordinary handler keeps a goroutine with its stack and
// net/http's per-connection buffers. For plain HTTP/1.1 the API instead
// parks the poll in the hub (Hub.Park) and takes the connection over
// (hijack, h1.Listener.Take): while parked it holds only the socket and a
// small record. When the poll is answered, the answer is written straight
// to the socket (h1.Conn.Start), and the connection goes on serving the
// client's next request on the raw path (raw.go), or back to net/http.
// HTTP/2, TLS and "Connection: close" requests are held in their handler.

// connState is what the API keeps with a taken-over connection
// (h1.Conn.Value) from one request to the next.
type connState struct {
	ticket poll.Ticket // the session of its last poll (Hub.Park)
}

// parkable reports whether r may take the goroutine-free path.
func (a *API) parkable(r *http.Request) bool {
	return a.ln != nil && r.ProtoMajor == 1 && r.ProtoMinor == 1 && r.TLS == nil && !r.Close &&
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

// parkedPoll is one poll parked in the hub. Its fields are what it holds
// while parked, which every parked poll pays for in memory: keep them few.
//
// decide is held by the handler until it has decided who answers and
// parked the connection (h1.Conn.Park), so that done, which waits for it,
// never runs before: conn set means the poll's done callback writes the
// answer; conn nil (a hijack that failed, on echo's path) means the
// handler itself waits on result.
type parkedPoll struct {
	a      *API
	start  time.Time
	decide sync.Mutex
	conn   *h1.Conn
	header []byte          // the answer's header lines (h1.HeaderLines)
	result chan pollResult // only when the hijack failed
	after  func()          // gives the poll's place under --max-parked-per-ip back; nil when uncapped
	id     string          // the session
	ticket *poll.Ticket    // the connection's ticket: the poll's owner in the hub (Hub.Cancel)
}

// dataParked serves a poll read by echo through Hub.Park: answered at
// once through echo, or parked with its connection taken over. release
// (may be nil) gives the poll's place back once it is answered, whichever
// way, or a panic has left.
func (a *API) dataParked(c echo.Context, args pollArgs, release func()) error {
	after := once(release)
	st := &connState{}
	p := &parkedPoll{a: a, start: time.Now(), after: after, id: args.id, ticket: &st.ticket}
	// Held before parking, so that a shutdown waiting for held answers
	// cannot miss one that is being taken over right now.
	h := a.holdPoll(after)
	defer h.giveBack() // a panic on the way (the recover middleware's) too
	p.decide.Lock()    // done waits until who answers is decided
	decided := false
	defer func() {
		if !decided {
			p.decide.Unlock() // a panic on the way: done must not wait forever
		}
	}()
	msgs, err, parked := a.hub.Park(&st.ticket, args.id, args.ack, args.hasAck, args.hold, p.done)
	if !parked {
		h.giveBack() // before the answer: the client may poll again at once
		a.observePoll(p.start, msgs, err, false)
		return a.writePoll(c, msgs, err)
	}
	h.pass()
	func() {
		defer func() { decided = true; p.decide.Unlock() }() // whatever happens here
		nc, brw, herr := c.Response().Hijack()
		if herr != nil {
			a.ln.Release()
			p.result = make(chan pollResult, 1)
			return
		}
		p.conn = a.ln.Take(nc, brw.Reader)
		p.conn.Value = st
		p.header = h1.HeaderLines(c.Response().Header())
		p.conn.Park(p) // before done may run (it waits for decide)
		c.Set(parkedKey, "parked")
	}()
	if p.conn != nil {
		return nil
	}
	r := <-p.result // bounded by the hold
	return a.writePoll(c, r.msgs, r.err)
}

// once returns f wrapped to run at most once (nil for nil).
func once(f func()) func() {
	if f == nil {
		return nil
	}
	var o sync.Once
	return func() { o.Do(f) }
}

// pollHold is what a poll holds until it is answered: the listener's hold
// (a shutdown waits for it) and the client's place under
// --max-parked-per-ip (after: nil when polls are uncapped; called again,
// it does nothing).
type pollHold struct {
	l     *h1.Listener
	after func()
	held  bool
}

// holdPoll takes the listener's hold for a poll whose place is after.
func (a *API) holdPoll(after func()) pollHold {
	a.ln.Hold()
	return pollHold{l: a.ln, after: after, held: true}
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
		h.l.Release()
		h.slot()
	}
}

// done is the hub's callback: it answers the poll. What it returns moves
// the connection on (its next request), after the answers of the same
// fan-out are written. An answer the socket cannot take at once (a client
// not reading) is finished on a goroutine of its own, so that it holds up
// neither the publisher nor the other answers of a fan-out.
func (p *parkedPoll) done(msgs []poll.Message, err error) func() {
	p.decide.Lock() // wait until the handler has decided (echo), at once (raw)
	p.decide.Unlock()
	if p.conn != nil && !p.conn.Claim() {
		return nil // the client has gone: gone has ended the poll
	}
	p.a.observePoll(p.start, msgs, err, false)
	if p.after != nil {
		p.after() // before the answer: the client may poll again at once, on another connection too
	}
	if p.conn == nil {
		p.result <- pollResult{msgs, err}
		return nil
	}
	_, rest, closing := p.a.startPoll(p.conn, p.header, msgs, err)
	then := func() {
		if p.conn.Finish(rest, closing) {
			p.a.nextRequest(p.conn, false)
		}
		p.a.ln.Release()
	}
	if len(rest) > 0 {
		go then()
		return nil
	}
	return then
}

// Gone ends a poll whose client has gone (h1.Conn.Park: the sweeper found
// its connection closed or reset, and has closed it): the hub's poll is
// canceled (its messages stay for the next poll), the poll counts as gone,
// and its place under --max-parked-per-ip and the listener's hold are
// given back.
func (p *parkedPoll) Gone() {
	p.a.hub.Cancel(p.id, p.ticket)
	p.a.observePoll(p.start, nil, nil, true)
	if p.after != nil {
		p.after()
	}
	p.a.ln.Release()
}

// nextRequest moves a connection whose answer was written on: to the raw
// path for its next request, or back to net/http when the API does not
// keep connections (trusted proxies).
func (a *API) nextRequest(c *h1.Conn, afterBody bool) {
	if a.own {
		c.Next(afterBody)
		return
	}
	c.HandBack()
}

var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// startPoll starts writing a poll's answer on conn (h1.Conn.Start):
// 200 with msgs, 204 with none, or err's error answer. header holds the
// header lines every /data answer carries.
//
// The rest of a 200 the socket does not take at once refers to the
// messages' rendered bytes, shared with the mailbox (wire.AnswerPieces),
// not to a copy of the answer.
func (a *API) startPoll(conn *h1.Conn, header []byte, msgs []poll.Message, err error) (status int, rest net.Buffers, closing bool) {
	switch {
	case err != nil:
		status, lines, body := a.rawError(err, http.MethodGet, "/data", conn.IP(), header)
		rest, closing = conn.Start(status, lines, body, nil)
		return status, rest, closing
	case len(msgs) > 0:
		bp := answerBufs.Get().(*[]byte)
		defer answerBufs.Put(bp)
		*bp = wire.AppendAnswer((*bp)[:0], msgs)
		rest, closing = conn.Start(http.StatusOK, header, *bp, func() [][]byte { return wire.AnswerPieces(msgs) })
		return http.StatusOK, rest, closing
	}
	rest, closing = conn.Start(http.StatusNoContent, header, nil, nil)
	return http.StatusNoContent, rest, closing
}

// writePoll writes a poll's answer through echo: the messages' rendered
// bytes, shared with the mailbox (wire.AnswerPieces), not indented for
// ?pretty.
func (a *API) writePoll(c echo.Context, msgs []poll.Message, err error) error {
	switch {
	case err != nil:
		return err
	case len(msgs) == 0:
		return c.NoContent(http.StatusNoContent)
	}
	return a.writePieces(c, http.StatusOK, wire.AnswerPieces(msgs))
}
