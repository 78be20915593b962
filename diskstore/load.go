package diskstore

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/longpoll/longpoll/internal/codec"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// load reads the directory back into the memory store (before the journal
// is attached, so nothing read is written again). A new directory gets its
// format version. Records nothing refers to any more (a message no list
// holds, left by a crash between two changes of one push) are deleted;
// a reference to a message that is not there is corruption. It returns
// what it read, and what the journal's writer is to know of the records.
func (s *Store) load(cfg poll.StoreConfig) (LoadStats, *recIndex, error) {
	var st LoadStats
	x := newRecIndex()
	v, closer, err := s.db.Get([]byte{kindVersion})
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if !s.empty() {
			return st, x, errors.New("it holds records but no longpoll format version: not longpoll data")
		}
		return st, x, s.db.Set([]byte{kindVersion}, []byte(formatVersion), pebble.Sync)
	case err != nil:
		return st, x, err
	}
	version := string(v)
	closer.Close()
	switch version {
	case formatVersion:
	case formatVersion1:
		// Read as it is (its 'm' and 'q' keys); marked as the new format
		// before anything of it is written, so that an earlier longpoll
		// refuses it rather than miss the records (it would lose the
		// messages in them and give their seqs again).
		if err := s.db.Set([]byte{kindVersion}, []byte(formatVersion), pebble.Sync); err != nil {
			return st, x, err
		}
		s.log.Info("storage: the data directory's format is now "+formatVersion+"; an earlier longpoll refuses it (keep a backup taken before to go back)", "was", version)
	default:
		return st, x, fmt.Errorf("its format is %q, this longpoll reads %q and %q", version, formatVersion, formatVersion1)
	}

	// A message several mailboxes or lists hold is kept once per holder;
	// read back, it is one envelope again (shared, counted once).
	envs := make(map[string]*poll.Envelope)
	envelope := func(v []byte) (*poll.Envelope, error) {
		e, err := codec.ParseEnvelope(v)
		if err != nil {
			return nil, err
		}
		if seen, ok := envs[e.ID]; ok {
			return seen, nil
		}
		if cfg.Render != nil {
			if e.Rendered, err = cfg.Render(e); err != nil {
				return nil, fmt.Errorf("message %s: %w: %v", e.ID, errCorrupt, err)
			}
		}
		envs[e.ID] = e
		return e, nil
	}

	sessions := make(map[string]*session.Session)
	if err := s.scan(kindSession, func(k, v []byte) error {
		sess, err := codec.ParseSession(v)
		if err != nil {
			return fmt.Errorf("session %s: %w", k[1:], err)
		}
		sessions[sess.ID] = sess
		return nil
	}); err != nil {
		return st, x, err
	}
	// Each session's seq up to which messages left its mailbox: its 'a'
	// key, or the 'q' key of an earlier version.
	acked := make(map[string]uint64)
	var garbage [][]byte
	for _, kind := range []byte{kindLastSeq, kindAcked} {
		if err := s.scan(kind, func(k, v []byte) error {
			sid := string(k[1:])
			if sessions[sid] == nil {
				garbage = append(garbage, bytes.Clone(k))
				return nil
			}
			n, err := readU64(v)
			if err != nil {
				return fmt.Errorf("session %s: %w", sid, err)
			}
			acked[sid] = max(acked[sid], n)
			return nil
		}); err != nil {
			return st, x, err
		}
	}
	// Each session's messages with where they are kept, sorted by seq
	// below: a record rewritten by the sweep (records.go) holds older
	// seqs than records written before it.
	type kept struct {
		poll.Message
		rec  uint64
		size int
	}
	msgs := make(map[string][]kept)
	if err := s.scan(kindMessage, func(k, v []byte) error {
		sid, seq, err := splitN(k)
		if err != nil {
			return err
		}
		if sessions[sid] == nil {
			garbage = append(garbage, bytes.Clone(k))
			return nil
		}
		e, err := envelope(v)
		if err != nil {
			return fmt.Errorf("session %s, seq %d: %w", sid, seq, err)
		}
		msgs[sid] = append(msgs[sid], kept{Message: poll.Message{Seq: seq, Envelope: e}})
		return nil
	}); err != nil {
		return st, x, err
	}
	if err := s.scan(kindRecord, func(k, v []byte) error {
		id, rec, err := splitN(k)
		if err != nil || id != "" {
			return fmt.Errorf("%w: record key %q", errCorrupt, k)
		}
		x.next = max(x.next, rec+1)
		var last []byte
		var e *poll.Envelope
		live := 0
		if err := parseRecord(v, func(sid string, seq uint64, env []byte, size int) error {
			if sessions[sid] == nil || seq <= acked[sid] {
				return nil // left its mailbox
			}
			if len(last) != len(env) || len(env) > 0 && &last[0] != &env[0] {
				var err error
				if e, err = envelope(env); err != nil {
					return fmt.Errorf("session %s, seq %d: %w", sid, seq, err)
				}
				last = env
			}
			msgs[sid] = append(msgs[sid], kept{poll.Message{Seq: seq, Envelope: e}, rec, size})
			live++
			return nil
		}); err != nil {
			return fmt.Errorf("record %d: %w", rec, err)
		}
		if live == 0 {
			garbage = append(garbage, bytes.Clone(k))
		} else {
			x.recs[rec] = &recInfo{allBytes: len(v)}
		}
		return nil
	}); err != nil {
		return st, x, err
	}
	byDevice := make(map[string]*session.Session)
	for _, sess := range sessions {
		if other := byDevice[sess.DeviceID]; other != nil {
			return st, x, fmt.Errorf("%w: sessions %s and %s are both online for device %q", errCorrupt, other.ID, sess.ID, sess.DeviceID)
		}
		byDevice[sess.DeviceID] = sess
		ks := msgs[sess.ID]
		slices.SortFunc(ks, func(a, b kept) int { return cmp.Compare(a.Seq, b.Seq) })
		list := make([]poll.Message, len(ks))
		for i, m := range ks {
			list[i] = m.Message
			x.add(sess.ID, m.Seq, m.rec, m.size)
		}
		last := acked[sess.ID]
		if n := len(list); n > 0 {
			if list[n-1].Seq-list[0].Seq != uint64(n-1) || list[0].Seq <= last {
				return st, x, fmt.Errorf("%w: the mailbox of session %s has seqs %d…%d (%d messages), acknowledged up to %d", errCorrupt, sess.ID, list[0].Seq, list[n-1].Seq, n, last)
			}
			last = list[n-1].Seq // the newest message is the newest seq given
		}
		s.RestoreSession(sess, last, list)
		st.Sessions++
		st.Messages += len(list)
	}

	// Keys sort by list, then order (a big-endian number after the
	// list's name): each list's messages come oldest first, as
	// RestoreOffline wants them, even where lists' keys interleave.
	if err := s.scan(kindOffline, func(k, v []byte) error {
		list, _, err := splitN(k)
		if err != nil {
			return err
		}
		e, err := envelope(v)
		if err != nil {
			return fmt.Errorf("offline list %s: %w", list, err)
		}
		s.RestoreOffline(list, e)
		st.OfflineMessages++
		return nil
	}); err != nil {
		return st, x, err
	}

	now := cfg.Now()
	if err := s.scan(kindID, func(k, v []byte) error {
		expires, res, err := codec.ParseID(v)
		if err != nil {
			return fmt.Errorf("idempotency id %q: %w", k[1:], err)
		}
		if !expires.After(now) {
			garbage = append(garbage, bytes.Clone(k))
			return nil
		}
		s.RestoreID(string(k[1:]), res, expires)
		st.IDs++
		return nil
	}); err != nil {
		return st, x, err
	}
	if err := s.scan(kindName, func(k, v []byte) error {
		n, err := readU64(v)
		if err != nil {
			return fmt.Errorf("name %q: %w", k[1:], err)
		}
		s.RestoreName(string(k[1:]), time.Unix(0, int64(n)))
		return nil
	}); err != nil {
		return st, x, err
	}
	if len(garbage) > 0 {
		b := s.db.NewBatch()
		for _, k := range garbage {
			if err := b.Delete(k, nil); err != nil {
				b.Close()
				return st, x, err
			}
		}
		if err := b.Commit(pebble.Sync); err != nil {
			b.Close()
			return st, x, err
		}
		b.Close()
		s.log.Info("storage: records nothing referred to any more deleted", "records", len(garbage))
	}
	return st, x, nil
}

// empty reports whether the engine holds no record at all.
func (s *Store) empty() bool {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false
	}
	defer it.Close()
	return !it.First()
}

// scan calls fn with every record of kind, in key order. fn's arguments
// are valid only during the call.
func (s *Store) scan(kind byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}
