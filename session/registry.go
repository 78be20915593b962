package session

import (
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
)

// Registry holds the online sessions: a go-cache keyed by session ID, plus
// indexes by device, user and topic for routing. A session expires when it
// has not been refreshed (Touch, Refresh) for the TTL, by the registry's
// clock; DeleteExpired, called by the cleanup job, evicts it.
//
// Concurrency: the cache has its own lock; mu guards the indexes and
// orders every change of a session's refresh time against its eviction. A
// session is live exactly while byDevice maps its device to it. The
// Registry runs no goroutine (the cache has no janitor).
type Registry struct {
	ttl   time.Duration
	now   func() time.Time
	cache *cache.Cache

	mu       sync.RWMutex
	byDevice map[string]*Session
	byUser   map[string]map[string]*Session
	byTopic  map[string]map[string]*Session
	// patterns counts the wildcard patterns (IsPattern) among byTopic's
	// keys: while there are none, ByTopic looks up the topic alone.
	patterns int

	// keepAlive, when set, may veto an expiry (a session with a parked poll
	// is not idle); a vetoed session is refreshed instead.
	keepAlive func(*Session) bool
}

// NewRegistry returns an empty registry whose sessions expire after ttl
// without a refresh, by the clock now (nil: time.Now); keepAlive (may be
// nil) can keep a session that would expire. DeleteExpired returns the
// sessions that expired.
func NewRegistry(ttl time.Duration, now func() time.Time, keepAlive func(*Session) bool) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{
		ttl:       ttl,
		now:       now,
		cache:     cache.New(cache.NoExpiration, 0), // expiry is the registry's, by its clock
		byDevice:  make(map[string]*Session),
		byUser:    make(map[string]map[string]*Session),
		byTopic:   make(map[string]map[string]*Session),
		keepAlive: keepAlive,
	}
}

// TTL returns the idle time after which a session expires.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Add makes s online, refreshed now, and returns the session it replaces
// (same device), or nil. The replaced session is no longer online when Add
// returns.
func (r *Registry) Add(s *Session) (replaced *Session) {
	r.mu.Lock()
	old := r.byDevice[s.DeviceID]
	if old != nil {
		r.unindexLocked(old)
	}
	r.indexLocked(s)
	s.refreshed.Store(r.now().UnixNano())
	r.cache.Set(s.ID, s, cache.NoExpiration)
	r.mu.Unlock()
	if old != nil {
		r.cache.Delete(old.ID)
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
	s := v.(*Session)
	if r.idle(s, r.now()) {
		return nil, false
	}
	return s, true
}

// Touch refreshes the idle timer of the session with id and returns it. It
// fails for unknown and already expired sessions; it never revives one.
//
// A session refreshed within the last touchSlack keeps its refresh time:
// polls come back to back, and stamping it for each of them would cost
// more than the precision is worth. Expiry still happens between
// TTL-touchSlack and TTL after the last poll, when the cleanup job runs.
func (r *Registry) Touch(id string) (*Session, bool) {
	v, ok := r.cache.Get(id)
	if !ok {
		return nil, false
	}
	s := v.(*Session)
	if r.refresh(s) {
		return s, true
	}
	return nil, false
}

// Refresh is Touch for a session the caller already holds (the delivery
// hub, from the poll before): it refreshes s's idle timer and reports
// whether s is still online. Within touchSlack of s's last refresh it
// answers from s alone, without a lookup or a lock. A session going
// offline at that very moment may still be reported online, as with Touch.
func (r *Registry) Refresh(s *Session) bool { return r.refresh(s) }

// refresh stamps s's refresh time now unless it was stamped within the
// slack, and reports whether s is online: indexed and not past its TTL.
func (r *Registry) refresh(s *Session) bool {
	now := r.now()
	if r.recent(s, now) {
		return true
	}
	// Stamped only while s is still indexed and not past its TTL, under mu
	// so that DeleteExpired (which evicts under mu) cannot interleave.
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.byDevice[s.DeviceID] != s || r.idle(s, now) {
		return false
	}
	s.refreshed.Store(now.UnixNano())
	return true
}

// recent reports whether s is online and was refreshed within touchSlack
// of now.
func (r *Registry) recent(s *Session, now time.Time) bool {
	t := s.refreshed.Load()
	return t != 0 && now.UnixNano()-t < int64(r.touchSlack())
}

// idle reports whether s is offline or has not been refreshed for the TTL.
func (r *Registry) idle(s *Session, now time.Time) bool {
	t := s.refreshed.Load()
	return t == 0 || now.UnixNano()-t >= int64(r.ttl)
}

// touchSlack is how recent a refresh may be for Touch to skip it: 1% of
// the TTL, at most a second.
func (r *Registry) touchSlack() time.Duration {
	return min(r.ttl/100, time.Second)
}

// DeleteExpired evicts every session idle for the TTL, unless keepAlive
// vetoes it (the session is then refreshed), and returns the sessions it
// evicted.
func (r *Registry) DeleteExpired() []*Session {
	now := r.now()
	var out []*Session
	for _, item := range r.cache.Items() {
		if s := item.Object.(*Session); r.idle(s, now) && r.expire(s, now) {
			out = append(out, s)
		}
	}
	return out
}

// expire evicts s, idle at now, unless keepAlive vetoes it or it went
// offline or was refreshed meanwhile. It reports whether it evicted s.
func (r *Registry) expire(s *Session, now time.Time) bool {
	keep := r.keepAlive != nil && r.keepAlive(s)
	r.mu.Lock()
	if r.byDevice[s.DeviceID] != s || !r.idle(s, now) {
		r.mu.Unlock()
		return false // removed, replaced or refreshed meanwhile: nothing to do
	}
	if keep {
		s.refreshed.Store(now.UnixNano())
		r.mu.Unlock()
		return false
	}
	r.unindexLocked(s)
	r.mu.Unlock()
	r.cache.Delete(s.ID)
	return true
}

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

// ByTopic returns the online sessions subscribed to topic, by its name or
// by a wildcard pattern that matches it (MatchingPatterns), each once.
func (r *Registry) ByTopic(topic string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.patterns == 0 {
		return values(r.byTopic[topic])
	}
	sets := make([]map[string]*Session, 0, 4)
	if m := r.byTopic[topic]; len(m) > 0 {
		sets = append(sets, m)
	}
	MatchingPatterns(topic, func(p string) {
		if m := r.byTopic[p]; len(m) > 0 {
			sets = append(sets, m)
		}
	})
	switch len(sets) {
	case 0:
		return nil
	case 1:
		return values(sets[0])
	}
	seen := make(map[string]*Session)
	for _, m := range sets {
		for id, s := range m {
			seen[id] = s
		}
	}
	return values(seen)
}

// Resubscribe swaps next, a copy of the online session cur with other
// topics (Session.WithTopics), in for cur: next is online, indexed by its
// topics and refreshed when cur was; cur is offline (Refresh reports false
// for it). It reports false, changing nothing, when cur is not online.
func (r *Registry) Resubscribe(cur, next *Session) bool {
	r.mu.Lock()
	if r.byDevice[cur.DeviceID] != cur {
		r.mu.Unlock()
		return false
	}
	refreshed := cur.refreshed.Load()
	r.unindexLocked(cur)
	r.indexLocked(next)
	next.refreshed.Store(refreshed)
	r.cache.Set(next.ID, next, cache.NoExpiration)
	r.mu.Unlock()
	return true
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

func (r *Registry) indexLocked(s *Session) {
	r.byDevice[s.DeviceID] = s
	if s.UserID != "" {
		add(r.byUser, s.UserID, s)
	}
	for _, t := range s.Topics {
		if add(r.byTopic, t, s) && IsPattern(t) {
			r.patterns++
		}
	}
}

func (r *Registry) unindexLocked(s *Session) {
	s.refreshed.Store(0) // offline: Refresh must look it up
	delete(r.byDevice, s.DeviceID)
	if s.UserID != "" {
		del(r.byUser, s.UserID, s)
	}
	for _, t := range s.Topics {
		if del(r.byTopic, t, s) && IsPattern(t) {
			r.patterns--
		}
	}
}

// add indexes s under key and reports whether key is new in idx.
func add(idx map[string]map[string]*Session, key string, s *Session) (created bool) {
	m := idx[key]
	if m == nil {
		m = make(map[string]*Session)
		idx[key] = m
		created = true
	}
	m[s.ID] = s
	return created
}

// del drops s from key's index and reports whether key left idx.
func del(idx map[string]map[string]*Session, key string, s *Session) (removed bool) {
	m, ok := idx[key]
	if !ok {
		return false
	}
	delete(m, s.ID)
	if len(m) == 0 {
		delete(idx, key)
		return true
	}
	return false
}
