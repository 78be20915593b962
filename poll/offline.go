package poll

import (
	"sync"
	"time"
)

// OfflineStore keeps messages for devices and users that have no online
// session, until they connect or the messages expire. Implementations must
// be safe for concurrent use. The in-memory MemoryStore is the default; a
// durable or shared (Redis) store slots in behind the same interface.
type OfflineStore interface {
	// Put appends e under key. With limit > 0 it fails with ErrMailboxFull
	// when key already holds limit messages; limit 0 means no limit.
	Put(key string, e *Envelope, limit int) error
	// Take removes every message under key and returns them, oldest first,
	// expired or not (the caller tells them apart).
	Take(key string) []*Envelope
	// DropExpired removes every message whose Expires is not after now and
	// returns them.
	DropExpired(now time.Time) []*Envelope
	// Len returns the number of stored messages.
	Len() int
}

// Offline store keys for a device and a user.
func deviceKey(id string) string { return "device:" + id }
func userKey(id string) string   { return "user:" + id }

// MemoryStore is an in-process OfflineStore. Concurrency: one mutex guards
// the map; every method takes it.
type MemoryStore struct {
	mu    sync.Mutex
	byKey map[string][]*Envelope
	n     int
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{byKey: make(map[string][]*Envelope)}
}

// Put implements OfflineStore.
func (s *MemoryStore) Put(key string, e *Envelope, limit int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && len(s.byKey[key]) >= limit {
		return ErrMailboxFull
	}
	s.byKey[key] = append(s.byKey[key], e)
	s.n++
	return nil
}

// Take implements OfflineStore.
func (s *MemoryStore) Take(key string) []*Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, ok := s.byKey[key]
	if !ok {
		return nil
	}
	delete(s.byKey, key)
	s.n -= len(list)
	return list
}

// DropExpired implements OfflineStore.
func (s *MemoryStore) DropExpired(now time.Time) []*Envelope {
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

// Len implements OfflineStore.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
