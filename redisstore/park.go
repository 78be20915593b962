package redisstore

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/longpoll/longpoll/poll"
)

// Parked polls. This node's waiters are kept per session (usually one; a
// second while a newer poll's script runs), each named by its owner
// ("node:gen"), which Redis records for the poll it holds parked. A
// waiter is answered exactly once, by whoever first marks it answered
// under s.mu (answer): the messages a script took for it, a notification,
// its hold passing, Cancel or WakeAll. A waiter answered too late to
// carry what a script took for it (it was canceled meanwhile) leaves those
// messages in the mailbox, unacknowledged, for the next poll.

// Park implements poll.Store.
func (s *Store) Park(t *poll.Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]poll.Message, error) func()) ([]poll.Message, error, bool) {
	_, msgs, err, parked := s.park(t, id, ack, hasAck, hold, done)
	return msgs, err, parked
}

// park is Park, and returns the waiter.
func (s *Store) park(t *poll.Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]poll.Message, error) func()) (*waiter, []poll.Message, error, bool) {
	w := &waiter{id: id, owner: s.node + ":" + strconv.FormatUint(s.gen.Add(1), 36), ticket: t, done: done, inflight: true}
	s.mu.Lock()
	s.parked[id] = append(s.parked[id], w)
	s.mu.Unlock()
	// notParked takes w off without an answer: Park answers for it.
	notParked := func() {
		s.mu.Lock()
		w.answered = true
		s.remove(w)
		s.mu.Unlock()
	}
	now := s.cfg.Now()
	r, err := s.exec(parkScript, id, ackArg(ack, hasAck), w.owner, ms(now.Add(hold)), ms(now))
	if err != nil {
		notParked()
		return nil, nil, err, false
	}
	arr, err := reply(r)
	if err != nil {
		notParked()
		return nil, nil, err, false
	}
	s.setStored(arr[2])
	if k, _ := arr[0].ToString(); k == "M" {
		notParked()
		msgs, err := s.messages(arr[1])
		return nil, msgs, err, false
	}
	if mine, _ := arr[1].ToString(); mine != "" { // this node's poll it superseded
		if pw := s.local(id, mine); pw != nil {
			s.answer(pw, nil, poll.ErrSuperseded)
		}
	}
	s.mu.Lock()
	w.inflight = false
	woken := w.woken
	if !w.answered { // a script may have answered it already
		w.counted = true
		s.nPark.Add(1)
		w.timer = time.AfterFunc(hold, func() { s.leave(w, "t") })
	}
	s.mu.Unlock()
	if woken { // WakeAll ran while the script did
		go func() {
			if s.answer(w, nil, nil) {
				s.leave(w, "x")
			}
		}()
	}
	return w, nil, nil, true
}

// remove takes w off s.parked. Callers hold s.mu.
func (s *Store) remove(w *waiter) {
	list := slices.DeleteFunc(s.parked[w.id], func(x *waiter) bool { return x == w })
	if len(list) == 0 {
		delete(s.parked, w.id)
	} else {
		s.parked[w.id] = list
	}
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
	s.remove(w)
	if w.timer != nil {
		w.timer.Stop()
	}
	counted := w.counted
	s.mu.Unlock()
	if counted {
		s.nPark.Add(-1)
	}
	if then := w.done(msgs, err); then != nil {
		then()
	}
	return true
}

// leave runs the unpark script for w: "w" (woken: answer if messages are
// pending), "s" (a sweep after notifications may have been lost: "w", and
// answer a poll superseded or closed meanwhile), "t" (the hold passed:
// answer with what is pending), "x" (answered already: give up the
// ownership).
func (s *Store) leave(w *waiter, mode string) {
	r, err := s.exec(unparkScript, w.id, w.owner, mode)
	var arr []rueidis.RedisMessage
	if err == nil {
		arr, err = r.ToArray()
	}
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
		why, _ := arr[1].ToString()
		switch {
		case mode != "t" && mode != "s":
		case why == "gone":
			s.answer(w, nil, poll.ErrSessionClosed)
		case why == "other":
			s.answer(w, nil, poll.ErrSuperseded)
		default: // no longer parked there, nothing pending: let the client poll again
			s.answer(w, nil, nil)
		}
	default:
		if mode == "t" {
			s.answer(w, nil, nil)
		}
	}
}

// local returns this node's waiter on id named owner, or nil.
func (s *Store) local(id, owner string) *waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.parked[id] {
		if w.owner == owner {
			return w
		}
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

// Wait implements poll.Store: a Park whose answer it waits for, held
// until ctx's deadline (a session's ttl without one: the idle clock of
// the session stays at the end of the hold).
func (s *Store) Wait(ctx context.Context, id string, stop <-chan struct{}, ack uint64, hasAck bool) ([]poll.Message, error) {
	type result struct {
		msgs []poll.Message
		err  error
	}
	hold := s.cfg.SessionTTL
	if dl, ok := ctx.Deadline(); ok {
		hold = time.Until(dl)
	}
	hold = max(hold, time.Millisecond)
	ch := make(chan result, 1)
	w, msgs, err, parked := s.park(nil, id, ack, hasAck, hold, func(m []poll.Message, err error) func() {
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
	s.leave(w, "t") // answers it (if nothing did meanwhile), with what is pending
	r := <-ch
	return r.msgs, r.err
}

// Cancel implements poll.Store.
func (s *Store) Cancel(id string, t *poll.Ticket) bool {
	if t == nil {
		return false
	}
	s.mu.Lock()
	var w *waiter
	for _, x := range s.parked[id] {
		if x.ticket == t && !x.inflight {
			w = x
		}
	}
	s.mu.Unlock()
	if w == nil || !s.answer(w, nil, poll.ErrCanceled) {
		return false
	}
	go s.leave(w, "x")
	return true
}

// waiters returns this node's waiters whose park script has answered
// (Park must not both answer and call done). With wake, those whose
// script is still under way are marked woken: park answers them once it
// sees they parked. (A sweep leaves them be: their script reads Redis as
// it is now.)
func (s *Store) waiters(wake bool) []*waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*waiter
	for _, ws := range s.parked {
		for _, w := range ws {
			if !w.inflight {
				list = append(list, w)
			} else if wake {
				w.woken = true
			}
		}
	}
	return list
}

// WakeAll implements poll.Store: this node's parked polls are answered
// empty. Redis still names them owners; the next poll of each session
// supersedes that.
func (s *Store) WakeAll() {
	for _, w := range s.waiters(true) {
		s.answer(w, nil, nil)
	}
}

// sweep asks Redis, for every parked poll of this node, whether messages
// wait for it or it was superseded or closed: after pub/sub was cut,
// notifications may have been lost.
func (s *Store) sweep() {
	for _, w := range s.waiters(false) {
		go s.leave(w, "s")
	}
}

// entries handles a notification's "m" and "w" entries (scripts.go,
// woken): "m\n<sid>\n<owner>\n<first seq>\n<newest seq answered
// before>\n<count>\n" and count times "<length>\n<record>"; "w\n<sid>\n".
func (s *Store) entries(msg string) {
	line := func() string {
		i := strings.IndexByte(msg, '\n')
		if i < 0 {
			msg = ""
			return ""
		}
		l := msg[:i]
		msg = msg[i+1:]
		return l
	}
	for msg != "" {
		switch line() {
		case "w":
			id := line()
			s.mu.Lock()
			ws := slices.Clone(s.parked[id])
			s.mu.Unlock()
			for _, w := range ws {
				go s.leave(w, "w")
			}
		case "m":
			id, owner := line(), line()
			first, err1 := strconv.ParseUint(line(), 10, 64)
			sent, err2 := strconv.ParseUint(line(), 10, 64)
			n, err3 := strconv.Atoi(line())
			if err1 != nil || err2 != nil || err3 != nil || n < 0 || n > len(msg) {
				s.log.Error("redis: a notification this node cannot read")
				return
			}
			recs := make([]string, 0, n)
			for range n {
				size, err := strconv.Atoi(line())
				if err != nil || size < 0 || size > len(msg) {
					s.log.Error("redis: a notification this node cannot read")
					return
				}
				recs = append(recs, msg[:size])
				msg = msg[size:]
			}
			if w := s.local(id, owner); w != nil {
				go func() {
					msgs, err := s.build(first, sent, recs)
					s.answer(w, msgs, err)
				}()
			}
		default:
			s.log.Error("redis: a notification this node cannot read")
			return
		}
	}
}

// channel is this node's sharded pub/sub channel.
func (s *Store) channel() string { return s.p + "n:" + s.node }

// listen receives this node's notifications until Close, subscribing
// again after a cut; each confirmed subscription but the first sweeps.
// subscribed is closed at the first.
func (s *Store) listen(subscribed chan struct{}) {
	defer s.wg.Done()
	first := true
	ctx := rueidis.WithOnSubscriptionHook(s.ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind != "ssubscribe" {
			return
		}
		if first {
			first = false
			close(subscribed)
			return
		}
		s.sweep()
	})
	for s.ctx.Err() == nil {
		// On a connection of its own: Redis's pub/sub output limit, or a
		// cut, then never fails the node's commands.
		err := s.client.Dedicated(func(dc rueidis.DedicatedClient) error {
			return dc.Receive(ctx, dc.B().Ssubscribe().Channel(s.channel()).Build(), func(m rueidis.PubSubMessage) {
				s.notified(m.Message)
			})
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

// notified handles one notification: entries "m" (the messages taken for
// a parked poll) and "w" (messages pending: read them), or "s <sid>
// <owner>" (superseded), "c <sid> <owner> <code>" (ended). It runs on the
// connection's reader and must not wait: answers go out on goroutines of
// their own. Messages taken for a poll that is no longer here stay in the
// mailbox, unacknowledged, for its next poll.
func (s *Store) notified(msg string) {
	if strings.HasPrefix(msg, "m\n") || strings.HasPrefix(msg, "w\n") {
		s.entries(msg)
		return
	}
	f := strings.Fields(msg)
	if len(f) < 2 {
		return
	}
	switch f[0] {
	case "s":
		if len(f) == 3 {
			if w := s.local(f[1], f[2]); w != nil {
				go s.answer(w, nil, poll.ErrSuperseded)
			}
		}
	case "c":
		if len(f) == 4 {
			if w := s.local(f[1], f[2]); w != nil {
				go s.answer(w, nil, codeErr(f[3]))
			}
		}
	}
}
