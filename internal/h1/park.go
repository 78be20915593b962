package h1

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Parked connections and their peers.
//
// A connection parked between a request and its answer (a long poll) is
// read by nobody, so a client that closes or resets it would go unnoticed
// until the answer: its socket, and whatever the handler holds for it,
// would stay for the whole hold. Instead of a goroutine per parked
// connection, one sweeper per listener looks at every parked connection
// each Liveness interval, with one non-blocking MSG_PEEK recv(2): an end
// of stream or an error means the peer has gone, and the connection's
// gone func runs. Data waiting (a pipelined request) or nothing to read
// means it is still there.

// Connection states (Conn.state).
const (
	stateIdle   int32 = iota // being served, or waiting for a request
	stateParked              // parked: the sweeper checks its peer
	stateGone                // its peer was found gone; gone has run
)

// parkedList is an intrusive list of parked connections (Conn.prev, next).
type parkedList struct {
	head *Conn
	n    int
}

func (p *parkedList) add(c *Conn) {
	c.prev, c.next = nil, p.head
	if p.head != nil {
		p.head.prev = c
	}
	p.head = c
	p.n++
}

func (p *parkedList) remove(c *Conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		p.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	p.n--
}

// Goner is told that the peer of a parked connection has gone.
type Goner interface {
	// Gone runs (on the sweeper's goroutine, once) instead of any answer:
	// it must end what the handler holds for the request without writing
	// to the connection, which is closed.
	Gone()
}

// Park records c as parked: until Claim, the sweeper checks its peer, and
// if the peer closes or resets its end, c is closed and gone.Gone runs.
func (c *Conn) Park(gone Goner) {
	c.l.mu.Lock()
	c.gone = gone
	c.state.Store(stateParked)
	c.l.parked.add(c)
	c.l.mu.Unlock()
}

// Claim takes a parked c back to answer it: true, unless its peer was
// found gone first (c is then closed and its gone has run or is running:
// the caller answers nothing and leaves c alone). A c that was not parked
// is claimed at once.
func (c *Conn) Claim() bool {
	if c.state.Load() == stateIdle {
		return true
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if !c.state.CompareAndSwap(stateParked, stateIdle) {
		return false
	}
	c.l.parked.remove(c)
	c.gone = nil
	return true
}

// sweep checks the parked connections' peers every Liveness interval
// until the listener closes.
func (l *Listener) sweep() {
	t := time.NewTicker(l.t.Liveness)
	defer t.Stop()
	var batch []*Conn
	for {
		select {
		case <-l.closed:
			return
		case <-t.C:
		}
		l.mu.Lock()
		batch = batch[:0]
		for c := l.parked.head; c != nil; c = c.next {
			batch = append(batch, c)
		}
		l.mu.Unlock()
		for i, c := range batch {
			if c.state.Load() == stateParked && peerGone(c.raw) {
				l.goneParked(c)
			}
			batch[i] = nil
		}
		if cap(batch) > 4*len(batch)+1024 {
			batch = nil // a burst of parked connections has passed
		}
	}
}

// goneParked ends a parked connection whose peer has gone, unless it was
// claimed meanwhile.
func (l *Listener) goneParked(c *Conn) {
	l.mu.Lock()
	if !c.state.CompareAndSwap(stateParked, stateGone) {
		l.mu.Unlock()
		return
	}
	l.parked.remove(c)
	gone := c.gone
	c.gone = nil
	l.mu.Unlock()
	l.gone.Add(1)
	c.abort()
	if gone != nil {
		gone.Gone()
	}
}

// peerGone reports whether conn's peer has closed or reset its end: a
// non-blocking peek at the socket finds the end of the stream or an error.
// Anything but a TCP socket is never found gone.
func peerGone(conn net.Conn) bool {
	tc, ok := unwrap(conn).(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return true // closed
	}
	gone := false
	var b [1]byte
	cerr := rc.Control(func(fd uintptr) {
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				// nothing to read: still there
			case err != nil, n == 0:
				gone = true // reset, or the end of the stream
			}
			return
		}
	})
	return gone || cerr != nil
}
