package poll

import (
	"sync"
	"time"
)

// Offline store keys for a device and a user.
func deviceKey(id string) string { return "device:" + id }
func userKey(id string) string   { return "user:" + id }

// offlineLists keeps the messages of devices and users that have no
// online session (keyed deviceKey, userKey), in send order, until they
// connect or the messages expire. Concurrency: one mutex guards the map;
// every method takes it.
type offlineLists struct {
	mu    sync.Mutex
	byKey map[string][]*Envelope
	n     int
	j     Journal // nil: not journaled
}

// record tells the journal, if any, that e joined or left key's list.
// Callers hold mu.
func (s *offlineLists) record(kind OpKind, key string, e *Envelope) {
	if s.j != nil {
		s.j.Record(Op{Kind: kind, ID: key, Env: e})
	}
}

func newOfflineLists() *offlineLists {
	return &offlineLists{byKey: make(map[string][]*Envelope)}
}

// Put appends e under key. With limit > 0 it fails with ErrMailboxFull when
// key already holds limit messages; limit 0 means no limit.
func (s *offlineLists) Put(key string, e *Envelope, limit int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && len(s.byKey[key]) >= limit {
		return ErrMailboxFull
	}
	s.byKey[key] = append(s.byKey[key], e)
	s.n++
	s.record(OpOfflinePut, key, e)
	return nil
}

// Take removes every message under key and returns them, oldest first,
// expired or not (the caller tells them apart).
func (s *offlineLists) Take(key string) []*Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, ok := s.byKey[key]
	if !ok {
		return nil
	}
	delete(s.byKey, key)
	s.n -= len(list)
	for _, e := range list {
		s.record(OpOfflineRemove, key, e)
	}
	return list
}

// DropExpired removes every message whose Expires is not after now and
// returns them.
func (s *offlineLists) DropExpired(now time.Time) []*Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var dropped []*Envelope
	for key, list := range s.byKey {
		keep := list[:0]
		for _, e := range list {
			if e.Expires.After(now) {
				keep = append(keep, e)
			} else {
				dropped = append(dropped, e)
				s.record(OpOfflineRemove, key, e)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(s.byKey, key)
		} else {
			s.byKey[key] = keep
		}
	}
	s.n -= len(dropped)
	return dropped
}

// Len returns the number of stored messages.
func (s *offlineLists) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
