package api

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Listener wraps the server's listener so that connections the API took
// over while a poll was parked can be handed back to the HTTP server once
// the poll is answered: Accept returns them as if they were new, and the
// server reads the client's next request from them. Everything but
// Accept and Close is the inner listener's.
type Listener struct {
	net.Listener
	back     chan net.Conn
	accepted chan acceptResult
	closed   chan struct{}
	once     sync.Once

	mu       sync.Mutex // orders Return against Close
	isClosed bool

	parked  int                   // taken-over connections not yet handed back (under mu)
	drained []chan struct{}       // closed when parked drops to 0 (under mu)
	idle    map[net.Conn]struct{} // owned connections waiting for a request (under mu)
	repolls atomic.Uint64         // re-polls served on owned connections (tests)
	pushes  atomic.Uint64         // pushes served on owned connections (tests)

	// IdleTimeout bounds the wait for the next request on a connection the
	// API owns (after an answered poll or push); ReadHeaderTimeout bounds
	// reading that request's head once it has begun, ReadTimeout its body.
	// Zero means the defaults (DefaultIdleTimeout, DefaultReadHeaderTimeout,
	// DefaultReadTimeout). Set them before serving, to the http.Server's
	// values.
	IdleTimeout, ReadHeaderTimeout, ReadTimeout time.Duration
}

// Defaults of the Listener's zero timeouts.
const (
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
)

type acceptResult struct {
	c   net.Conn
	err error
}

// backQueue is how many handed-back connections may wait for Accept; a
// broadcast hands back one per parked poll in a burst. Beyond it a
// connection is closed (its client reconnects).
const backQueue = 1 << 16

// NewListener wraps inner. It starts one goroutine, which ends when Close
// is called.
func NewListener(inner net.Listener) *Listener {
	l := &Listener{
		Listener: inner,
		back:     make(chan net.Conn, backQueue),
		idle:     make(map[net.Conn]struct{}),
		accepted: make(chan acceptResult),
		closed:   make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

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

// Return hands c back to the server. After Close, or when the hand-back
// queue is full, c is closed instead (the client reconnects).
func (l *Listener) Return(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		c.Close()
		return
	}
	select {
	case l.back <- c:
	default:
		c.Close()
	}
}

// Close stops accepting; connections waiting to be handed back, and owned
// connections waiting for a request, are closed.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.isClosed = true
		for c := range l.idle {
			c.Close()
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

// adopt records c as an owned connection waiting for its next request, so
// that Close closes it. It reports false, recording nothing, once the
// listener is closed. disown ends the record.
func (l *Listener) adopt(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		return false
	}
	l.idle[c] = struct{}{}
	return true
}

func (l *Listener) disown(c net.Conn) {
	l.mu.Lock()
	delete(l.idle, c)
	l.mu.Unlock()
}

// orDefault is d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (l *Listener) idleTimeout() time.Duration { return orDefault(l.IdleTimeout, DefaultIdleTimeout) }

func (l *Listener) readTimeout() time.Duration { return orDefault(l.ReadTimeout, DefaultReadTimeout) }

func (l *Listener) readHeaderTimeout() time.Duration {
	return orDefault(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
}

// hold records a connection taken over while its poll is parked; release
// (after Return or closing it) ends that record.
func (l *Listener) hold() {
	l.mu.Lock()
	l.parked++
	l.mu.Unlock()
}

func (l *Listener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.parked--; l.parked == 0 {
		for _, ch := range l.drained {
			close(ch)
		}
		l.drained = nil
	}
}

// WaitParked waits until every taken-over connection has been answered and
// handed back or closed, or ctx ends. Call it after the hub is closed
// (which answers every parked poll) and before shutting the server down.
func (l *Listener) WaitParked(ctx context.Context) error {
	l.mu.Lock()
	if l.parked == 0 {
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
