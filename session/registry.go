package session

import (
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
)

// Registry holds the online sessions: a go-cache keyed by session ID whose
// expiration is the session TTL (refreshed by Touch), plus indexes by device,
// user and topic for routing.
//
// Concurrency: the cache has its own lock; mu guards the indexes. A session
// is live exactly while byDevice maps its device to it, which is how the
// cache's eviction callback tells an expiry (live session) from the echo of
// an explicit Remove or replacement (already unindexed). The Registry runs
// no goroutine: expiry happens only when DeleteExpired is called.
type Registry struct {
	ttl   time.Duration
	cache *cache.Cache

	mu       sync.RWMutex
	byDevice map[string]*Session
	byUser   map[string]map[string]*Session
	byTopic  map[string]map[string]*Session

	// onExpire is called, outside every lock, for each live session that
	// DeleteExpired evicted.
	onExpire func(*Session)
	// keepAlive, when set, may veto an expiry (a session with a parked poll
	// is not idle); a vetoed session is put back with a fresh TTL.
	keepAlive func(*Session) bool
}

// NewRegistry returns an empty registry whose sessions expire after ttl
// without a Touch. onExpire (may be nil) is called for every session that
// expires; keepAlive (may be nil) can keep a session that would expire.
func NewRegistry(ttl time.Duration, onExpire func(*Session), keepAlive func(*Session) bool) *Registry {
	r := &Registry{
		ttl:       ttl,
		cache:     cache.New(ttl, 0), // no janitor: the cleanup job owns expiry
		byDevice:  make(map[string]*Session),
		byUser:    make(map[string]map[string]*Session),
		byTopic:   make(map[string]map[string]*Session),
		onExpire:  onExpire,
		keepAlive: keepAlive,
	}
	r.cache.OnEvicted(r.evicted)
	return r
}

// TTL returns the idle time after which a session expires.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Add makes s online and returns the session it replaces (same device), or
// nil. The replaced session is no longer online when Add returns.
func (r *Registry) Add(s *Session) (replaced *Session) {
	r.mu.Lock()
	old := r.byDevice[s.DeviceID]
	if old != nil {
		r.unindexLocked(old)
	}
	r.indexLocked(s)
	r.cache.Set(s.ID, s, r.ttl)
	s.refreshed.Store(time.Now().UnixNano())
	r.mu.Unlock()
	if old != nil {
		r.cache.Delete(old.ID) // its eviction callback sees it unindexed: no-op
	}
	return old
}

// Remove takes s offline. It reports false if s was not online (already
// removed, replaced or expired).
func (r *Registry) Remove(s *Session) bool {
	r.mu.Lock()
	if r.byDevice[s.DeviceID] != s {
		r.mu.Unlock()
		return false
	}
	r.unindexLocked(s)
	r.mu.Unlock()
	r.cache.Delete(s.ID)
	return true
}

// Get returns the online session with id. A session past its TTL that the
// cleanup job has not yet evicted is not returned.
func (r *Registry) Get(id string) (*Session, bool) {
	v, ok := r.cache.Get(id)
	if !ok {
		return nil, false
	}
	return v.(*Session), true
}

// Touch refreshes the idle timer of the session with id and returns it. It
// fails for unknown and already expired sessions; it never revives one.
//
// A session touched within the last touchSlack keeps its expiry: polls come
// back to back, and rewriting the cache entry (under the cache's single
// write lock) for each of them would cost more than the precision is worth.
// Expiry still happens between TTL-touchSlack and TTL after the last poll,
// when the cleanup job runs.
func (r *Registry) Touch(id string) (*Session, bool) {
	v, ok := r.cache.Get(id)
	if !ok {
		return nil, false
	}
	s := v.(*Session)
	now := time.Now()
	if r.recent(s, now) {
		return s, true
	}
	if r.cache.Replace(id, s, r.ttl) != nil {
		return nil, false
	}
	// Stamped only while s is still indexed: a Remove or replacement that
	// unindexed it after the Replace above must not be undone, or Refresh
	// would report it online for up to touchSlack.
	r.mu.RLock()
	if r.byDevice[s.DeviceID] == s {
		s.refreshed.Store(now.UnixNano())
	}
	r.mu.RUnlock()
	return s, true
}

// Refresh is Touch for a session the caller already holds (the delivery
// hub, from the poll before): it refreshes s's idle timer and reports
// whether s is still online. Within touchSlack of s's last refresh it
// answers from s alone, without a lookup. A session going offline at that
// very moment may still be reported online, as with Touch.
func (r *Registry) Refresh(s *Session) bool {
	if r.recent(s, time.Now()) {
		return true
	}
	got, ok := r.Touch(s.ID)
	return ok && got == s
}

// recent reports whether s is online and its expiry was set within
// touchSlack of now.
func (r *Registry) recent(s *Session, now time.Time) bool {
	t := s.refreshed.Load()
	return t != 0 && now.UnixNano()-t < int64(r.touchSlack())
}

// touchSlack is how recent a refresh may be for Touch to skip it: 1% of
// the TTL, at most a second.
func (r *Registry) touchSlack() time.Duration {
	return min(r.ttl/100, time.Second)
}

// DeleteExpired evicts every session idle past the TTL, calling onExpire for
// each (unless keepAlive vetoes it).
func (r *Registry) DeleteExpired() { r.cache.DeleteExpired() }

// ByDevice returns the online session of device, or nil.
func (r *Registry) ByDevice(device string) *Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byDevice[device]
}

// ByUser returns the online sessions of user, in no particular order.
func (r *Registry) ByUser(user string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return values(r.byUser[user])
}

// ByTopic returns the online sessions subscribed to topic.
func (r *Registry) ByTopic(topic string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return values(r.byTopic[topic])
}

// All returns every online session.
func (r *Registry) All() []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Session, 0, len(r.byDevice))
	for _, s := range r.byDevice {
		out = append(out, s)
	}
	return out
}

// Counts returns the number of online sessions, distinct users among them,
// and topics with at least one subscriber. Devices equal sessions, since a
// device has at most one session.
func (r *Registry) Counts() (sessions, users, topics int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byDevice), len(r.byUser), len(r.byTopic)
}

func values(m map[string]*Session) []*Session {
	out := make([]*Session, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	return out
}

func (r *Registry) evicted(_ string, v any) {
	s := v.(*Session)
	if r.keepAlive != nil && r.keepAlive(s) {
		// Check and re-add under mu, so a concurrent Remove or replacement
		// (which unindexes under mu before deleting from the cache) either
		// happens first (no re-add) or deletes the re-added entry.
		r.mu.Lock()
		live := r.byDevice[s.DeviceID] == s
		if live && r.cache.Add(s.ID, s, r.ttl) == nil {
			s.refreshed.Store(time.Now().UnixNano())
		}
		r.mu.Unlock()
		if live {
			return
		}
	}
	r.mu.Lock()
	if r.byDevice[s.DeviceID] != s {
		r.mu.Unlock()
		return // removed or replaced explicitly; that path did the work
	}
	r.unindexLocked(s)
	r.mu.Unlock()
	if r.onExpire != nil {
		r.onExpire(s)
	}
}

func (r *Registry) indexLocked(s *Session) {
	r.byDevice[s.DeviceID] = s
	if s.UserID != "" {
		add(r.byUser, s.UserID, s)
	}
	for _, t := range s.Topics {
		add(r.byTopic, t, s)
	}
}

func (r *Registry) unindexLocked(s *Session) {
	s.refreshed.Store(0) // offline: Refresh must look it up
	delete(r.byDevice, s.DeviceID)
	if s.UserID != "" {
		del(r.byUser, s.UserID, s)
	}
	for _, t := range s.Topics {
		del(r.byTopic, t, s)
	}
}

func add(idx map[string]map[string]*Session, key string, s *Session) {
	m := idx[key]
	if m == nil {
		m = make(map[string]*Session)
		idx[key] = m
	}
	m[s.ID] = s
}

func del(idx map[string]map[string]*Session, key string, s *Session) {
	m := idx[key]
	delete(m, s.ID)
	if len(m) == 0 {
		delete(idx, key)
	}
}
