package api

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// Re-polls on a taken-over connection.
//
// A client whose parked poll was just answered polls again at once, on the
// same connection. Handing the connection back to net/http for that costs
// a new server connection, a goroutine, request parsing into maps and the
// whole middleware chain, about as much as the delivery itself. So after
// answering, the API keeps the connection and reads the next request head
// itself (serveOwned). A plain re-poll — GET /data over HTTP/1.1 with a Host
// and no body, origin, upgrade or close — is parked again right there, with
// the same checks the echo route applies (the peer address is the
// connection's, checked against the network filter again since a
// publisher's connection is kept too; the per-address poll cap is taken
// again). Anything else, including every head the parser
// is not sure about and every invalid poll, goes to net/http with the bytes
// read so far in front (Listener.Return), and is served exactly as before.
//
// The fast path is off when X-Forwarded-For is trusted (the client address
// could change from request to request).

// maxOwnedHead bounds the request head read on an owned connection; a
// longer head goes to net/http, which applies its own limits.
const maxOwnedHead = 4096

var ownedReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxOwnedHead) }}

// hot is a request head that serveOwned may serve itself: a re-poll
// (GET /data) or a publisher's push (POST /push with a JSON body).
type hot struct {
	push    bool
	query   string // the raw query of /data
	bodyLen int    // POST /push: the Content-Length
	auth    string // POST /push: the Authorization header, if any
}

// parseHot parses head, a complete request head ending in an empty line
// (CRLF line ends), and reports whether it is a plain re-poll or push that
// the fast path serves exactly as the echo route would. maxHeader is the
// configured header cap, counted as limitHeaders counts it. Any doubt
// answers false.
func parseHot(head []byte, maxHeader int) (hot, bool) {
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return hot{}, false
	}
	var h hot
	method, target, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return hot{}, false
	}
	target, ok = bytes.CutSuffix(target, []byte(" HTTP/1.1"))
	if !ok || !validTarget(target) {
		return hot{}, false
	}
	switch {
	case string(method) == http.MethodGet && string(target) == "/data":
	case string(method) == http.MethodGet && bytes.HasPrefix(target, []byte("/data?")):
		h.query = string(target[len("/data?"):])
	case string(method) == http.MethodPost && string(target) == "/push":
		h.push = true
	default:
		return hot{}, false
	}

	size := len(method) + len(target) + len("HTTP/1.1") + 12 // as limitHeaders counts
	hosts, lengths, types, auths := 0, 0, 0, 0
	var pragma []byte // the first Pragma value
	cacheControl := false
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return hot{}, false
		}
		if len(line) == 0 {
			break // the empty line that ends the head
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validName(name) || !validValue(value) {
			return hot{}, false
		}
		value = bytes.Trim(value, " \t")
		switch {
		case equalFold(name, "Host"):
			if hosts++; hosts > 1 || !validHost(value) {
				return hot{}, false
			}
			size += len(value)
			continue
		case equalFold(name, "Connection"):
			if !equalFold(value, "keep-alive") {
				return hot{}, false
			}
		case h.push && equalFold(name, "Content-Length"):
			n, ok := contentLength(value)
			if lengths++; !ok || lengths > 1 {
				return hot{}, false
			}
			h.bodyLen = n
		case h.push && equalFold(name, "Content-Type"):
			if types++; string(value) != "application/json" {
				return hot{}, false
			}
		case equalFold(name, "Pragma"):
			if pragma == nil {
				pragma = value
			}
		case equalFold(name, "Cache-Control"):
			cacheControl = true
		case h.push && equalFold(name, "Authorization"):
			auths++
			h.auth = string(value)
		case equalFold(name, "Content-Length"), equalFold(name, "Transfer-Encoding"),
			equalFold(name, "Expect"), equalFold(name, "Upgrade"), equalFold(name, "Origin"),
			equalFold(name, "X-Forwarded-For"), equalFold(name, "Content-Encoding"):
			return hot{}, false
		}
		size += len(name) + len(value) + 4
	}
	if string(pragma) == "no-cache" && !cacheControl {
		size += len("Cache-Control") + len("no-cache") + 4 // net/http adds it (HTTP/1.0 caches)
	}
	if len(rest) != 0 || hosts != 1 || size > maxHeader ||
		h.push && (lengths != 1 || h.bodyLen == 0 || types != 1 || auths > 1) {
		return hot{}, false
	}
	return h, true
}

// contentLength parses a Content-Length of 1-9 decimal digits (larger
// ones are net/http's to refuse).
func contentLength(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// validTarget admits visible ASCII without a fragment.
func validTarget(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// validName admits an RFC 9110 token.
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validValue admits visible ASCII, space and tab.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

// validHost admits a non-empty host[:port] of letters, digits and
// "-._:[]".
func validHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// readHead waits for the next request head on br: up to idle for its first
// byte (unless one is buffered), then up to readHeader for the rest. It
// returns the head (valid until br is read again) or, when br's buffer
// fills without one or the line ends are not CRLF, ok false with
// everything read still buffered.
// A read error (the client left, a timeout, Close) is returned as err. rd
// keeps conn's read deadline.
func readHead(conn net.Conn, rd *readDeadline, br *bufio.Reader, idle, readHeader time.Duration) (head []byte, ok bool, err error) {
	if br.Buffered() == 0 {
		rd.idle(conn, idle)
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
			rd.set(conn, time.Now().Add(readHeader))
			deadline = true
		}
		if _, err := br.Peek(n + 1); err != nil && br.Buffered() == n {
			return nil, false, err
		}
	}
}

// skipCRLF drops up to four CR and LF bytes that old clients send after a
// POST body, as net/http does (RFC 9112 section 2.2): it waits, up to
// idle, for the first four bytes of the next request. A read error is left
// for readHead to meet.
func skipCRLF(conn net.Conn, rd *readDeadline, br *bufio.Reader, idle time.Duration) {
	rd.idle(conn, idle)
	b, _ := br.Peek(4)
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	_, _ = br.Discard(n)
}

// connState is what an owned connection carries from one request to the
// next (serveOwned, and a parked poll in between).
type connState struct {
	ticket poll.Ticket  // the session of its last poll (Hub.Park)
	read   readDeadline // its read deadline
}

// readDeadline is the read deadline last armed on an owned connection.
// Waiting for the next request re-arms the idle deadline only when the one
// armed has less than the idle timeout minus a slack left: arming a
// deadline updates a runtime timer, once per request otherwise.
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

// serveOwned serves the requests that follow an answered poll or push on
// conn (see above); ip is the peer's address, "" if not yet known,
// afterPost says the last request was a POST, and st is what the
// connection carries over from its last request. It runs on its own
// goroutine and ends when a poll parks again, the connection goes to
// net/http, or it is closed.
func (a *API) serveOwned(conn net.Conn, ip string, afterPost bool, st connState) {
	l := a.cfg.Listener
	if ip == "" {
		ip = remoteIP(conn.RemoteAddr())
	}
	br := ownedReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	defer func() {
		br.Reset(nil)
		ownedReaders.Put(br)
	}()
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("panic serving an owned connection", "err", v)
			l.disown(conn)
			conn.Close()
		}
	}()
	for {
		if !l.adopt(conn) {
			conn.Close() // the listener is closed: shutting down
			return
		}
		if afterPost {
			skipCRLF(conn, &st.read, br, l.idleTimeout())
			afterPost = false
		}
		head, ok, err := readHead(conn, &st.read, br, l.idleTimeout(), l.readHeaderTimeout())
		l.disown(conn)
		if err != nil {
			conn.Close() // the client left or idled out; nothing was asked
			return
		}
		var h hot
		if ok {
			h, ok = parseHot(head, a.cfg.MaxHeaderBytes)
		}
		if !ok || a.hub.Closing() {
			handBack(l, withBuffered(conn, br))
			return
		}
		if h.push {
			if !a.servePush(conn, &st.read, br, ip, head, h) {
				handBack(l, withBuffered(conn, br)) // the echo route answers
				return
			}
			afterPost = true
			continue
		}
		id, ack, hasAck, hold, err := a.pollArgs(h.query)
		if err != nil || strings.Contains(h.query, "pretty") || strings.IndexByte(h.query, '%') >= 0 {
			// net/http answers the error, or ?pretty (escaped, perhaps)
			handBack(l, withBuffered(conn, br))
			return
		}
		// The connection may have been taken over for a push, a route
		// without the network filter: apply it, as the /data route does.
		if !a.admitted(ip) {
			handBack(l, withBuffered(conn, br)) // net/http answers 403
			return
		}
		release, slot := a.takeSlot(ip)
		if !slot {
			handBack(l, withBuffered(conn, br)) // net/http answers 429
			return
		}
		var after func()
		if release != nil {
			var once sync.Once
			after = func() { once.Do(release) }
		}
		_, _ = br.Discard(len(head))
		l.repolls.Add(1)
		c := conn
		if br.Buffered() > 0 {
			c = withBuffered(conn, br) // a pipelined request follows
		}
		if a.parkOwned(c, ip, &st, id, ack, hasAck, hold, after) {
			return // the poll's answer starts the next round
		}
		// Answered at once: go on reading through br, which still holds
		// whatever c copied.
	}
}

// servePush serves a publisher's POST /push read by serveOwned: it reads
// the body, publishes and answers 202, or the error, itself (rawError, the
// echo route's rendering). It reports false, having consumed nothing, when
// the echo route should answer instead: a body over MaxPushBody (413), or
// a publisher not admitted (401, 403).
func (a *API) servePush(conn net.Conn, rd *readDeadline, br *bufio.Reader, ip string, head []byte, h hot) bool {
	if h.bodyLen > MaxPushBody || a.publisherCheck(ip, h.auth) != nil {
		return false
	}
	// Held like a parked poll, so that a shutdown (WaitParked) lets the
	// answer out.
	l := a.cfg.Listener
	l.hold()
	defer l.release()
	start := time.Now()
	_, _ = br.Discard(len(head))
	body := make([]byte, h.bodyLen)
	if br.Buffered() < h.bodyLen {
		rd.set(conn, time.Now().Add(l.readTimeout()))
	}
	if _, err := io.ReadFull(br, body); err != nil {
		conn.Close() // the client left or stalled mid-body, as net/http would
		return true
	}
	l.pushes.Add(1)
	status, header := http.StatusAccepted, a.pushHeader
	pushes, batch, err := wire.ParsePushes(body, wire.Publisher)
	var v any
	if err == nil {
		v, err = a.deliverAll(pushes, batch, a.hub.Publish)
	}
	if err != nil {
		var extra []byte
		status, extra, body = a.rawError(err, http.MethodPost, "/push", ip)
		header = append(extra, header...)
	} else {
		body = jsonLine(v)
	}
	a.writeAnswer(conn, status, header, body) // on failure conn is closed: the next read ends the loop
	a.logOwned(start, http.MethodPost, "/push", status, ip)
	return true
}

// parkOwned parks a re-poll read by serveOwned on conn, with what the
// connection carries (st), which it updates. It reports whether the poll
// parked; if not, it has answered it and conn may serve another request,
// unless it was closed (then the next read fails). The listener's hold and
// the poll's slot (after, which does nothing when called again) pass to the
// parked poll, or are given back here: also when a panic leaves (serveOwned
// recovers it), so that it neither stalls a shutdown nor keeps the client's
// slot.
func (a *API) parkOwned(conn net.Conn, ip string, st *connState, id string, ack uint64, hasAck bool, hold time.Duration, after func()) bool {
	p := &parkedPoll{a: a, start: time.Now(), ready: decided, conn: conn, header: a.ownedHeader, after: after, ip: ip, st: *st}
	h := a.holdPoll(after)
	defer h.giveBack() // a panic on the way (serveOwned recovers it) too
	msgs, err, parked := a.hub.Park(&p.st.ticket, id, ack, hasAck, hold, p.done)
	*st = p.st // read only, by done too, from here on
	if parked {
		h.pass()
		a.logOwned(p.start, http.MethodGet, "/data", "parked", ip)
		return true
	}
	h.slot()
	status, keep := a.writeRaw(conn, a.ownedHeader, msgs, err)
	a.observePoll(p.start, msgs, err, false)
	h.giveBack()
	a.logOwned(p.start, http.MethodGet, "/data", status, ip)
	if !keep {
		conn.Close()
	}
	return false
}

// decided is the ready channel of a poll parked on an owned connection:
// its connection is known from the start.
var decided = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// takeSlot takes a place under --max-parked-per-ip for the client at ip
// (capPolls and re-polls); release, nil when polls are not capped, gives
// it back. The client key (addrKey) is worked out only when polls are
// capped.
func (a *API) takeSlot(ip string) (release func(), ok bool) {
	if a.sec.polls == nil {
		return nil, true
	}
	k := addrKey(ip)
	if !a.sec.polls.acquire(k) {
		return nil, false
	}
	return func() { a.sec.polls.release(k) }, true
}

// logOwned writes logRequests' line for a request served on an owned
// connection.
func (a *API) logOwned(start time.Time, method, path string, status any, remote string) {
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("request", "method", method, "path", path, "status", status,
			"duration", time.Since(start), "remote", remote)
	}
}

// handBack gives conn to net/http (Listener.Return) without the write
// deadline of an earlier answer: net/http sets none when the server has no
// WriteTimeout.
func handBack(l *Listener, conn net.Conn) {
	_ = conn.SetDeadline(time.Time{})
	l.Return(conn)
}
