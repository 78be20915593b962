package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts bound the work on a taken-over connection. Zero fields take
// the defaults below; set them to the http.Server's values.
type Timeouts struct {
	// Idle bounds the wait for the next request.
	Idle time.Duration
	// ReadHeader bounds reading a request's head once it has begun.
	ReadHeader time.Duration
	// Read bounds reading a request's body.
	Read time.Duration
	// Write bounds writing the part of an answer the socket did not take
	// at once (a client that does not read).
	Write time.Duration
	// Liveness is how often the peers of parked connections (Conn.Park)
	// are checked for having closed or reset their end.
	Liveness time.Duration
}

// Defaults of Timeouts' zero fields.
const (
	DefaultIdle       = 2 * time.Minute
	DefaultReadHeader = 10 * time.Second
	DefaultRead       = 30 * time.Second
	DefaultWrite      = 10 * time.Second
	DefaultLiveness   = 2 * time.Second
)

// WithDefaults returns t with its zero fields set to the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	return Timeouts{or(t.Idle, DefaultIdle), or(t.ReadHeader, DefaultReadHeader), or(t.Read, DefaultRead), or(t.Write, DefaultWrite),
		or(t.Liveness, DefaultLiveness)}
}

// Outcome is a Handler's answer about one request.
type Outcome int

const (
	// Pass: the handler did not serve the request and consumed nothing;
	// it goes to net/http.
	Pass Outcome = iota
	// Served: the request was answered (or its connection closed); the
	// connection's next request is read at once.
	Served
	// Parked: the handler keeps the connection (after Request.Hold) and
	// will answer it later, then call Conn.Next or Conn.HandBack.
	Parked
)

// Handler serves requests read on taken-over connections.
type Handler interface {
	// ServeH1 serves r or passes it to net/http. It is called on the
	// connection's reading goroutine; r is valid until it returns.
	ServeH1(r *Request) Outcome
}

// Listener wraps the server's listener. It hands the connections the
// Handler gives back (HandBack, Pass) to the HTTP server, whose Accept
// returns them as if they were new, and it keeps the record of taken-over
// connections that a shutdown needs: which ones wait for a request (Close
// closes them) and how many answers are still owed (WaitHeld). Everything
// but Accept and Close is the inner listener's.
type Listener struct {
	net.Listener
	// Handler is asked about each request on a taken-over connection. Set
	// it before serving.
	Handler Handler
	// Draining, when set, reports that the server is shutting down:
	// answers then say "Connection: close" and close their connection, and
	// no more requests are read on taken-over connections.
	Draining func() bool
	// Logger receives the panics recovered on a connection's reading
	// goroutine; nil discards them.
	Logger *slog.Logger

	t        Timeouts
	unsent   budget       // what the rests of answers being written allocate
	dropped  atomic.Int64 // clients dropped for not taking their answer (Stats.Dropped)
	back     chan net.Conn
	accepted chan acceptResult
	closed   chan struct{}
	once     sync.Once

	mu       sync.Mutex // orders Return against Close
	isClosed bool
	held     int                // answers owed on taken-over connections (under mu)
	drained  []chan struct{}    // closed when held drops to 0 (under mu)
	idle     map[*Conn]struct{} // taken-over connections waiting for a request (under mu)
	parked   parkedList         // connections whose peers the sweeper checks (under mu)
	gone     atomic.Int64       // parked connections found gone, since the start
}

type acceptResult struct {
	c   net.Conn
	err error
}

// backQueue is how many handed-back connections may wait for Accept; a
// broadcast hands back one per parked poll in a burst. Beyond it a
// connection is closed (its client reconnects).
const backQueue = 1 << 16

// DefaultMaxUnsent is what the unsent rests of answers may allocate, over
// every connection of a listener, by default (Conn.Start).
const DefaultMaxUnsent = 64 << 20

// NewListener wraps inner. maxUnsent bounds what the unsent rests of
// answers allocate (0: DefaultMaxUnsent). It starts two goroutines, one
// accepting and one checking parked connections (sweep), which end when
// Close is called.
func NewListener(inner net.Listener, t Timeouts, maxUnsent int64) *Listener {
	if maxUnsent <= 0 {
		maxUnsent = DefaultMaxUnsent
	}
	l := &Listener{
		Listener: inner,
		unsent:   budget{max: maxUnsent},
		t:        t.WithDefaults(),
		back:     make(chan net.Conn, backQueue),
		idle:     make(map[*Conn]struct{}),
		accepted: make(chan acceptResult),
		closed:   make(chan struct{}),
	}
	go l.acceptLoop()
	go l.sweep()
	return l
}

// Timeouts returns the listener's timeouts, defaults filled in.
func (l *Listener) Timeouts() Timeouts { return l.t }

func (l *Listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.closed:
			if c != nil {
				c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return // the inner listener is closed; Accept reported it
		}
		// Other errors (EMFILE, ECONNABORTED…) are passed on and the loop
		// goes on: the server backs off and calls Accept again.
	}
}

// Accept returns the next new or handed-back connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	default:
	}
	select {
	case c := <-l.back:
		return c, nil
	case r := <-l.accepted:
		return r.c, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// giveBack hands nc to the server. After Close, or when the hand-back
// queue is full, nc is closed instead (the client reconnects).
func (l *Listener) giveBack(nc net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		nc.Close()
		return
	}
	select {
	case l.back <- nc:
	default:
		nc.Close()
	}
}

// Close stops accepting; connections waiting to be handed back, and
// taken-over connections waiting for a request, are closed.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.isClosed = true
		for c := range l.idle {
			c.raw.Close()
		}
		clear(l.idle)
		l.mu.Unlock()
		close(l.closed)
		err = l.Listener.Close()
		for {
			select {
			case c := <-l.back:
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

// adopt records c as waiting for its next request, so that Close closes
// it. It reports false, recording nothing, once the listener is closed.
// disown ends the record.
func (l *Listener) adopt(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		return false
	}
	l.idle[c] = struct{}{}
	return true
}

func (l *Listener) disown(c *Conn) {
	l.mu.Lock()
	delete(l.idle, c)
	l.mu.Unlock()
}

// Hold records an answer owed on a taken-over connection (a parked poll,
// a push being served): WaitHeld waits for it. Release ends the record.
func (l *Listener) Hold() {
	l.mu.Lock()
	l.held++
	l.mu.Unlock()
}

// Release ends a Hold.
func (l *Listener) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held--; l.held == 0 {
		for _, ch := range l.drained {
			close(ch)
		}
		l.drained = nil
	}
}

// WaitHeld waits until every Hold has been released, or ctx ends. Call it
// once whatever owes the answers has been told to give them (a shutdown
// answers every parked poll), before shutting the HTTP server down.
func (l *Listener) WaitHeld(ctx context.Context) error {
	l.mu.Lock()
	if l.held == 0 {
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.drained = append(l.drained, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats is a snapshot of the taken-over connections.
type Stats struct {
	// Idle counts connections waiting for their next request.
	Idle int
	// Held counts answers owed (Hold without Release).
	Held int
	// Unsent is what the rests of answers being written allocate.
	Unsent int64
	// Dropped counts clients dropped, since the start, for not taking
	// their answer: within the write timeout, or at once when its rest did
	// not fit the unsent budget.
	Dropped int64
	// Parked counts connections parked (Conn.Park); Gone those found,
	// since the start, with their peer gone.
	Parked int
	Gone   int64
}

// Stats returns the current counts.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Idle: len(l.idle), Held: l.held, Unsent: l.unsent.used.Load(), Dropped: l.dropped.Load(),
		Parked: l.parked.n, Gone: l.gone.Load()}
}

func (l *Listener) draining() bool { return l.Draining != nil && l.Draining() }

// Take takes over nc, hijacked from net/http after the request read
// through br (may be nil), whose buffered bytes (a pipelined request) are
// kept in front of the connection's next read. The caller answers the
// request on the returned Conn and then calls Next or HandBack (or
// closes it).
func (l *Listener) Take(nc net.Conn, br *bufio.Reader) *Conn {
	c := &Conn{l: l, raw: nc}
	if br != nil && br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		c.pending = bytes.Clone(b)
	}
	return c
}
