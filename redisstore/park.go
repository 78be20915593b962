package redisstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/longpoll/longpoll/poll"
)

// Parked polls. A waiter is answered exactly once, by whoever first takes
// it off s.parked under s.mu (answer): the messages a script took for it,
// a notification, its hold passing, Cancel or WakeAll. Redis decides who
// owns a session's poll; a waiter whose answer comes too late (it was
// canceled while a script took messages for it) leaves them in the
// mailbox, unacknowledged, for the next poll.

// Park implements poll.Store.
func (s *Store) Park(t *poll.Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]poll.Message, error) func()) ([]poll.Message, error, bool) {
	w := &waiter{id: id, owner: s.node + ":" + strconv.FormatUint(s.gen.Add(1), 36), ticket: t, done: done}
	s.mu.Lock()
	prev := s.parked[id]
	s.parked[id] = w
	s.mu.Unlock()
	// notParked takes w back off (prev, not superseded, is parked again).
	notParked := func() {
		s.mu.Lock()
		if s.parked[id] == w {
			if prev != nil && !prev.answered {
				s.parked[id] = prev
			} else {
				delete(s.parked, id)
			}
		}
		w.answered = true
		s.mu.Unlock()
	}
	now := s.cfg.Now()
	r, err := s.exec(parkScript, id, ackArg(ack, hasAck), w.owner, ms(now.Add(hold)), ms(now))
	if err != nil {
		notParked()
		return nil, err, false
	}
	arr, err := reply(r)
	if err != nil {
		notParked()
		return nil, err, false
	}
	s.setStored(arr[2])
	if k, _ := arr[0].ToString(); k == "M" {
		notParked()
		msgs, err := s.messages(arr[1])
		return msgs, err, false
	}
	s.nPark.Add(1)
	if prev != nil {
		s.answer(prev, nil, poll.ErrSuperseded)
	}
	s.mu.Lock()
	if !w.answered {
		w.timer = time.AfterFunc(hold, func() { s.leave(w, "t") })
	}
	s.mu.Unlock()
	return nil, nil, true
}

// answer answers w unless it was answered before, and reports whether it
// did.
func (s *Store) answer(w *waiter, msgs []poll.Message, err error) bool {
	s.mu.Lock()
	if w.answered {
		s.mu.Unlock()
		return false
	}
	w.answered = true
	if s.parked[w.id] == w {
		delete(s.parked, w.id)
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	s.mu.Unlock()
	s.nPark.Add(-1)
	if then := w.done(msgs, err); then != nil {
		then()
	}
	return true
}

// leave runs the unpark script for w: "w" (woken: answer if messages are
// pending), "t" (the hold passed: answer with what is pending), "x"
// (answered already: give up the ownership).
func (s *Store) leave(w *waiter, mode string) {
	r, err := s.exec(unparkScript, w.id, w.owner, mode)
	if err != nil {
		if mode == "t" {
			s.answer(w, nil, nil)
		}
		return
	}
	arr, err := r.ToArray()
	if err != nil || len(arr) == 0 {
		if mode == "t" {
			s.answer(w, nil, nil)
		}
		return
	}
	switch k, _ := arr[0].ToString(); k {
	case "M":
		msgs, err := s.messages(arr[1])
		s.answer(w, msgs, err)
	case "X":
		if mode == "t" { // a notification was lost, or an answer is on its way
			switch why, _ := arr[1].ToString(); why {
			case "gone":
				s.answer(w, nil, poll.ErrSessionClosed)
			case "other":
				s.answer(w, nil, poll.ErrSuperseded)
			default: // taken for w: if its answer was lost, the next poll gets them again
				s.answer(w, nil, nil)
			}
		}
	default:
		if mode == "t" {
			s.answer(w, nil, nil)
		}
	}
}

// local returns this node's poll parked on id as owner, or nil.
func (s *Store) local(id, owner string) *waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.parked[id]; w != nil && w.owner == owner {
		return w
	}
	return nil
}

// closeLocal answers the poll a script ended, if it is this node's.
func (s *Store) closeLocal(id, owner string, err error) {
	if owner == "" {
		return
	}
	if w := s.local(id, owner); w != nil {
		s.answer(w, nil, err)
	}
}

// answerTakes answers this node's polls for which a script took messages:
// {owner, sid, take}….
func (s *Store) answerTakes(list []rueidis.RedisMessage) {
	for _, l := range list {
		arr, err := l.ToArray()
		if err != nil || len(arr) != 3 {
			continue
		}
		owner, _ := arr[0].ToString()
		id, _ := arr[1].ToString()
		if w := s.local(id, owner); w != nil {
			msgs, err := s.messages(arr[2])
			s.answer(w, msgs, err)
		}
	}
}

// Wait implements poll.Store: a Park whose answer it waits for.
func (s *Store) Wait(ctx context.Context, id string, stop <-chan struct{}, ack uint64, hasAck bool) ([]poll.Message, error) {
	type result struct {
		msgs []poll.Message
		err  error
	}
	ch := make(chan result, 1)
	t := new(poll.Ticket)
	msgs, err, parked := s.Park(t, id, ack, hasAck, 24*time.Hour, func(m []poll.Message, err error) func() {
		ch <- result{m, err}
		return nil
	})
	if !parked {
		return msgs, err
	}
	select {
	case r := <-ch:
		return r.msgs, r.err
	case <-ctx.Done():
	case <-stop:
	}
	s.mu.Lock()
	w := s.parked[id]
	s.mu.Unlock()
	if w != nil && w.ticket == t {
		s.leave(w, "t") // answers it, with what is pending
	}
	r := <-ch
	return r.msgs, r.err
}

// Cancel implements poll.Store.
func (s *Store) Cancel(id string, t *poll.Ticket) bool {
	if t == nil {
		return false
	}
	s.mu.Lock()
	w := s.parked[id]
	s.mu.Unlock()
	if w == nil || w.ticket != t || !s.answer(w, nil, poll.ErrCanceled) {
		return false
	}
	go s.leave(w, "x")
	return true
}

// WakeAll implements poll.Store: this node's parked polls are answered
// empty. Redis still names them owners; the next poll of each session
// supersedes that.
func (s *Store) WakeAll() {
	s.mu.Lock()
	list := make([]*waiter, 0, len(s.parked))
	for _, w := range s.parked {
		list = append(list, w)
	}
	s.mu.Unlock()
	for _, w := range list {
		s.answer(w, nil, nil)
	}
}

// sweep asks Redis, for every parked poll of this node, whether messages
// wait for it: after pub/sub was cut, notifications may have been lost.
func (s *Store) sweep() {
	s.mu.Lock()
	list := make([]*waiter, 0, len(s.parked))
	for _, w := range s.parked {
		list = append(list, w)
	}
	s.mu.Unlock()
	for _, w := range list {
		go s.leave(w, "w")
	}
}

// channel is this node's sharded pub/sub channel.
func (s *Store) channel() string { return s.p + "n:" + s.node }

// listen receives this node's notifications until Close, subscribing
// again after a cut (and then sweeping).
func (s *Store) listen() {
	defer s.wg.Done()
	for first := true; s.ctx.Err() == nil; first = false {
		if !first {
			time.AfterFunc(500*time.Millisecond, s.sweep)
		}
		err := s.client.Receive(s.ctx, s.client.B().Ssubscribe().Channel(s.channel()).Build(), func(m rueidis.PubSubMessage) {
			s.notified(m.Message)
		})
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("redis: notifications cut, subscribing again", "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// notified handles one notification: "w <sid>…" (messages pending),
// "s <sid> <owner>" (superseded), "c <sid> <owner> <code>" (ended).
func (s *Store) notified(msg string) {
	f := strings.Fields(msg)
	if len(f) < 2 {
		return
	}
	switch f[0] {
	case "w":
		for _, id := range f[1:] {
			s.mu.Lock()
			w := s.parked[id]
			s.mu.Unlock()
			if w != nil {
				go s.leave(w, "w")
			}
		}
	case "s":
		if len(f) == 3 {
			if w := s.local(f[1], f[2]); w != nil {
				s.answer(w, nil, poll.ErrSuperseded)
			}
		}
	case "c":
		if len(f) == 4 {
			if w := s.local(f[1], f[2]); w != nil {
				s.answer(w, nil, codeErr(f[3]))
			}
		}
	}
}
