// Package redisstore is the poll.Store that keeps a deployment's state in
// Redis (one server or a Redis Cluster), so that any number of longpoll
// nodes serve the same sessions: a client may connect on one node, poll on
// a second, and be pushed to from a third.
//
// Every operation is one Lua script over the deployment's keys, which
// share one hash tag and so one slot (scripts.go lists them). A parked
// poll stays in the process that holds its connection; Redis records its
// owner, and a script that appends to its mailbox, supersedes it or ends
// its session tells that node over sharded pub/sub. A lost notification
// is never a lost message: messages leave a mailbox only when a cursor
// acknowledges them, and a poll reads the mailbox when it starts and when
// its hold ends.
//
// Redis unreachable: the operation fails with poll.ErrUnreachable (the
// methods that return no error answer "not found" or nothing), Err
// reports it until a ping succeeds again, and the hub answers 503.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/longpoll/longpoll/internal/codec"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// Options say which Redis to use.
type Options struct {
	// URL is redis://[user:pass@]host:port/db or rediss:// (TLS) for one
	// server; Cluster the addresses (host:port) of a Redis Cluster's
	// nodes. One of them must be set.
	URL     string
	Cluster []string
	// Prefix names the deployment: its keys are "{Prefix}:…" ("longpoll"
	// when empty). Deployments with different prefixes share a Redis
	// without meeting.
	Prefix string
	// Timeout bounds each command (2s when zero).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Store is the Redis poll.Store. Its methods are safe for concurrent use.
type Store struct {
	client rueidis.Client
	cfg    poll.StoreConfig
	log    *slog.Logger
	p      string   // the key prefix, "{name}:"
	node   string   // this process, in owners and its channel's name
	keys   []string // KEYS of every script: the sessions hash
	tmo    time.Duration

	err    atomic.Pointer[error] // why Redis is unusable, until a ping succeeds
	stored atomic.Int64          // StoredBytes, as last read
	gen    atomic.Uint64         // parked polls' owners

	mu     sync.Mutex           // parked and each waiter's answered, counted and timer
	parked map[string][]*waiter // session id -> this node's parked polls (see park.go)
	nPark  atomic.Int64

	pendingMu sync.Mutex
	pending   map[string]string // idempotency key -> the pending value this node's push recorded

	cacheMu sync.Mutex
	cache   map[string]cached         // session id -> its last decoded record
	envs    map[string]*poll.Envelope // message record -> the message, rendered

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// waiter is a poll parked in this process.
type waiter struct {
	id, owner string
	ticket    *poll.Ticket
	done      func([]poll.Message, error) func()
	timer     *time.Timer
	answered  bool
	counted   bool // in nPark
	inflight  bool // its park script has not answered yet
	woken     bool // WakeAll ran while it was in flight
}

type cached struct {
	rec string
	s   *session.Session
}

// Open connects to Redis and starts listening for this node's
// notifications. It fails when Redis does not answer a ping.
func Open(opts Options, cfg poll.StoreConfig) (*Store, error) {
	if cfg.MaxStoredBytes == 0 {
		cfg.MaxStoredBytes = poll.DefaultMaxStoredBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var co rueidis.ClientOption
	switch {
	case opts.URL != "" && len(opts.Cluster) > 0:
		return nil, errors.New("redis: a URL or cluster addresses, not both")
	case opts.URL != "":
		o, err := rueidis.ParseURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		co = o
	case len(opts.Cluster) > 0:
		co.InitAddress = opts.Cluster
		co.ShuffleInit = true
	default:
		return nil, errors.New("redis: no URL and no cluster addresses")
	}
	co.DisableCache = true
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "longpoll"
	}
	var b [9]byte
	_, _ = rand.Read(b[:])
	s := &Store{
		client:  client,
		cfg:     cfg,
		log:     opts.Logger,
		p:       "{" + prefix + "}:",
		node:    base64.RawURLEncoding.EncodeToString(b[:]),
		tmo:     opts.Timeout,
		parked:  make(map[string][]*waiter),
		cache:   make(map[string]cached),
		envs:    make(map[string]*poll.Envelope),
		pending: make(map[string]string),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.tmo <= 0 {
		s.tmo = 2 * time.Second
	}
	s.keys = []string{s.p + "s"}
	ctx, cancel := context.WithTimeout(context.Background(), s.tmo)
	defer cancel()
	if err := s.ping(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	subscribed := make(chan struct{})
	s.wg.Add(2)
	go s.listen(subscribed)
	go s.watch()
	select { // notifications sent before the subscription would be lost
	case <-subscribed:
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("redis: subscribing to %s: %w", s.channel(), ctx.Err())
	}
	s.refreshStored()
	return s, nil
}

// ping asks the node that serves the deployment's slot (a PING could go
// to any node of a cluster).
func (s *Store) ping(ctx context.Context) error {
	return s.client.Do(ctx, s.client.B().Exists().Key(s.keys[0]).Build()).Error()
}

// Close answers this node's parked polls (empty), gives the jobs' lease
// up if this node holds it, stops listening and closes the connections.
func (s *Store) Close() error {
	s.WakeAll()
	ctx, cancel := context.WithTimeout(context.Background(), s.tmo)
	_ = releaseScript.Exec(ctx, s.client, s.keys, []string{s.p, s.node}).Error()
	cancel()
	s.cancel()
	s.client.Close()
	s.wg.Wait()
	return nil
}

// Node names this process in the cluster.
func (s *Store) Node() string { return s.node }

// exec runs sc with the prefix and node before args. A failure to reach
// Redis marks the store unusable until a ping succeeds (Err).
func (s *Store) exec(sc *rueidis.Lua, args ...string) (rueidis.RedisResult, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.tmo)
	defer cancel()
	r := sc.Exec(ctx, s.client, s.keys, append([]string{s.p, s.node}, args...))
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		return r, s.failed(err)
	}
	return r, nil
}

// failed turns a Redis error into poll.ErrStorage (a refused script), or
// into poll.ErrUnreachable, which it remembers as the store's Err until a
// ping succeeds (a connection, a timeout, Redis not serving for now).
func (s *Store) failed(err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok && !unavailable(re) {
		s.log.Error("redis refused a script", "err", err)
		return fmt.Errorf("%w: redis: %v", poll.ErrStorage, err)
	}
	werr := fmt.Errorf("%w: redis: %v", poll.ErrUnreachable, err)
	if s.err.Swap(&werr) == nil {
		s.log.Error("redis unreachable: answering 503 until it is back", "err", err)
	}
	return werr
}

// unavailable reports whether Redis's error says it cannot serve for now
// (loading its data after a restart, a cluster without its slots, a
// replica not yet promoted): a failure like an unreachable server, not a
// refused script.
func unavailable(re *rueidis.RedisError) bool {
	msg := re.Error()
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "NOREPLICAS", "OOM"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return strings.Contains(msg, "non local key") // the slot is migrating
}

// watch pings Redis while it is unusable and clears Err once it answers,
// and keeps StoredBytes fresh.
func (s *Store) watch() {
	defer s.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if tick%8 == 0 {
			s.renewPending()
		}
		if s.err.Load() != nil {
			ctx, cancel := context.WithTimeout(s.ctx, s.tmo)
			err := s.ping(ctx)
			cancel()
			if err != nil {
				continue
			}
			s.err.Store(nil)
			s.log.Info("redis reachable again")
			s.sweep()
		}
		s.refreshStored()
	}
}

func (s *Store) refreshStored() {
	if st, err := s.stats(); err == nil {
		s.stored.Store(st[2])
	}
}

// Err implements poll.Store.
func (s *Store) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Flush implements poll.Store: every script has run in Redis when it
// returns (how durable that is, is Redis's appendfsync); a store that
// could not reach Redis since says so.
func (s *Store) Flush() error { return s.Err() }

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// envArgs are the fields of a message's record (scripts' hold).
func envArgs(e *poll.Envelope) []string {
	sys := "0"
	if strings.HasPrefix(e.Topic, "$") {
		sys = "1"
	}
	return []string{e.ID, string(codec.Envelope(e)), ms(e.Expires), sys, strconv.Itoa(e.Size())}
}

// whyErr maps a script's {"E", why}.
func whyErr(why string) error {
	switch why {
	case "notfound":
		return poll.ErrSessionNotFound
	case "full":
		return poll.ErrMailboxFull
	case "cursor":
		return poll.ErrInvalidCursor
	case "toomany":
		return poll.ErrTooManySessions
	}
	return fmt.Errorf("%w: redis: unexpected answer %q", poll.ErrStorage, why)
}

// reply reads a script's array answer; an {"E", why} answer is its error.
func reply(r rueidis.RedisResult) ([]rueidis.RedisMessage, error) {
	arr, err := r.ToArray()
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %v", poll.ErrStorage, err)
	}
	if len(arr) == 2 {
		if k, err := arr[0].ToString(); err == nil && k == "E" {
			why, _ := arr[1].ToString()
			return nil, whyErr(why)
		}
	}
	return arr, nil
}

// messages decodes a script's take: {first seq, newest seq answered
// before, records…}.
func (s *Store) messages(t rueidis.RedisMessage) ([]poll.Message, error) {
	arr, err := t.ToArray()
	if err != nil || len(arr) < 2 {
		return nil, fmt.Errorf("%w: redis: a take of %d fields: %v", poll.ErrStorage, len(arr), err)
	}
	first, _ := arr[0].AsInt64()
	sent, _ := arr[1].AsInt64()
	recs := make([]string, 0, len(arr)-2)
	for _, m := range arr[2:] {
		b, err := m.ToString()
		if err != nil {
			return nil, fmt.Errorf("%w: redis: %v", poll.ErrStorage, err)
		}
		recs = append(recs, b)
	}
	return s.build(uint64(first), uint64(sent), recs)
}

// build makes the messages of a take: the records from seq first on, and
// the newest seq an earlier answer carried.
func (s *Store) build(first, sent uint64, recs []string) ([]poll.Message, error) {
	out := make([]poll.Message, 0, len(recs))
	for i, b := range recs {
		e, err := s.envelope(b)
		if err != nil {
			return nil, err
		}
		seq := first + uint64(i)
		out = append(out, poll.Message{Seq: seq, Redelivery: seq <= sent, Envelope: e})
	}
	return out, nil
}

// envelope returns the message of a record, rendered, from the cache
// while it holds it (a fan-out's copies on this node are one, and a
// redelivery is not decoded again).
func (s *Store) envelope(rec string) (*poll.Envelope, error) {
	s.cacheMu.Lock()
	e, ok := s.envs[rec]
	s.cacheMu.Unlock()
	if ok {
		return e, nil
	}
	e, err := codec.ParseEnvelope([]byte(rec))
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %v", poll.ErrStorage, err)
	}
	if s.cfg.Render != nil {
		if e.Rendered, err = s.cfg.Render(e); err != nil {
			return nil, fmt.Errorf("%w: rendering %s: %v", poll.ErrStorage, e.ID, err)
		}
	}
	s.cacheMu.Lock()
	if len(s.envs) >= maxCachedEnvelopes {
		clear(s.envs)
	}
	s.envs[rec] = e
	s.cacheMu.Unlock()
	return e, nil
}

// maxCachedEnvelopes bounds the envelope cache (it is emptied when full).
const maxCachedEnvelopes = 4096

// decode returns the session of a record, from the cache while the record
// is the same.
func (s *Store) decode(rec string) (*session.Session, error) {
	sess, err := codec.ParseSession([]byte(rec))
	if err != nil {
		return nil, err
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if c, ok := s.cache[sess.ID]; ok && c.rec == rec {
		return c.s, nil
	}
	if len(s.cache) >= 1<<16 {
		clear(s.cache)
	}
	s.cache[sess.ID] = cached{rec, sess}
	return sess, nil
}

// sessionsOf decodes a list of records (nil entries: sessions gone).
func (s *Store) sessionsOf(arr []rueidis.RedisMessage) []*session.Session {
	out := make([]*session.Session, 0, len(arr))
	for _, m := range arr {
		rec, err := m.ToString()
		if err != nil {
			continue // nil: gone meanwhile
		}
		if sess, err := s.decode(rec); err == nil {
			out = append(out, sess)
		} else {
			s.log.Error("redis: unreadable session record", "err", err)
		}
	}
	return out
}

// lookup runs the lookup script.
func (s *Store) lookup(kind string, args ...string) ([]*session.Session, error) {
	r, err := s.exec(lookupScript, append([]string{kind}, args...)...)
	if err != nil {
		return nil, err
	}
	arr, err := r.ToArray()
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %v", poll.ErrStorage, err)
	}
	return s.sessionsOf(arr), nil
}

// Connect implements poll.Store.
func (s *Store) Connect(sess *session.Session, maxSessions int, now time.Time) (*session.Session, error) {
	r, err := s.exec(connectScript, string(codec.Session(sess)), sess.ID, sess.DeviceID, sess.UserID,
		strconv.Itoa(maxSessions), ms(now), strings.Join(sess.Topics, "\n"))
	if err != nil {
		return nil, err
	}
	arr, err := reply(r)
	if err != nil {
		return nil, err
	}
	oldRec, _ := arr[0].ToString()
	if oldRec == "" {
		return nil, nil
	}
	old, err := s.decode(oldRec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", poll.ErrStorage, err)
	}
	owner, _ := arr[1].ToString()
	s.closeLocal(old.ID, owner, poll.ErrSessionClosed)
	return old, nil
}

// End implements poll.Store.
func (s *Store) End(id string, ack uint64, hasAck bool, closeErr error, now time.Time) (*session.Session, error) {
	r, err := s.exec(endScript, id, ackArg(ack, hasAck), closeCode(closeErr), ms(now), strconv.FormatInt(s.cfg.MaxStoredBytes, 10))
	if err != nil {
		return nil, err
	}
	arr, err := reply(r)
	if err != nil {
		return nil, err
	}
	return s.ended(arr[0], arr[1], closeErr)
}

// ended decodes an ended session's record and answers its local poll.
func (s *Store) ended(recM, ownerM rueidis.RedisMessage, closeErr error) (*session.Session, error) {
	rec, _ := recM.ToString()
	sess, err := s.decode(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", poll.ErrStorage, err)
	}
	s.cacheMu.Lock()
	delete(s.cache, sess.ID)
	s.cacheMu.Unlock()
	owner, _ := ownerM.ToString()
	s.closeLocal(sess.ID, owner, closeErr)
	return sess, nil
}

func ackArg(ack uint64, hasAck bool) string {
	if !hasAck {
		return "-1"
	}
	return strconv.FormatUint(ack, 10)
}

// closeCode is how a script tells a node why a session's poll ended.
func closeCode(err error) string {
	if errors.Is(err, poll.ErrSessionNotFound) {
		return "n"
	}
	return "c"
}

func codeErr(code string) error {
	if code == "n" {
		return poll.ErrSessionNotFound
	}
	return poll.ErrSessionClosed
}

// expireBatch is how many sessions one expire script ends at most.
const expireBatch = 500

// Expire implements poll.Store.
func (s *Store) Expire(now time.Time) []*session.Session {
	var out []*session.Session
	before := ms(now.Add(-s.cfg.SessionTTL))
	for range 1000 {
		r, err := s.exec(expireScript, before, ms(now), strconv.FormatInt(s.cfg.MaxStoredBytes, 10), strconv.Itoa(expireBatch))
		if err != nil {
			return out
		}
		arr, err := r.ToArray()
		if err != nil {
			return out
		}
		for i := 0; i+1 < len(arr); i += 2 {
			if sess, err := s.ended(arr[i], arr[i+1], poll.ErrSessionNotFound); err == nil {
				out = append(out, sess)
			}
		}
		if len(arr) < 2*expireBatch {
			break
		}
	}
	return out
}

// Session implements poll.Store.
func (s *Store) Session(id string) (*session.Session, error) {
	list, err := s.lookup("s", id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, poll.ErrSessionNotFound
	}
	return list[0], nil
}

// Touch implements poll.Store.
func (s *Store) Touch(id string) (*session.Session, error) {
	r, err := s.exec(touchScript, id, ms(s.cfg.Now()))
	if err != nil {
		return nil, err
	}
	rec, err := r.ToString()
	if err != nil {
		return nil, poll.ErrSessionNotFound // nil: not online
	}
	sess, err := s.decode(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", poll.ErrStorage, err)
	}
	return sess, nil
}

// Refresh implements poll.Store without asking Redis: every park moves
// the session's idle clock (to the end of its hold), so a refresh at the
// start or the end of a poll has nothing to add. It says yes; a session
// gone meanwhile is found out by the poll's own script.
func (s *Store) Refresh(*session.Session) bool { return true }

// ByDevice implements poll.Store.
func (s *Store) ByDevice(device string) (*session.Session, error) {
	list, err := s.lookup("d", device)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return list[0], nil
}

// ByUser implements poll.Store.
func (s *Store) ByUser(user string) ([]*session.Session, error) { return s.members(s.p + "u:" + user) }

// ByTopic implements poll.Store: the subscribers of topic and of every
// pattern that matches it, each once.
func (s *Store) ByTopic(topic string) ([]*session.Session, error) {
	keys := []string{s.p + "t:" + topic}
	session.MatchingPatterns(topic, func(p string) { keys = append(keys, s.p+"t:"+p) })
	return s.members(keys...)
}

// members returns the online sessions whose ids are in the sets keys,
// each once. The sets and the records are read with plain commands, a
// page at a time, not in one script: a topic of many subscribers must not
// hold Redis up.
func (s *Store) members(keys ...string) ([]*session.Session, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.tmo)
	defer cancel()
	seen := make(map[string]struct{})
	var ids []string
	for _, k := range keys {
		for cursor := uint64(0); ; {
			e, err := s.client.Do(ctx, s.client.B().Sscan().Key(k).Cursor(cursor).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return nil, s.failed(err)
			}
			for _, id := range e.Elements {
				if _, ok := seen[id]; !ok {
					seen[id] = struct{}{}
					ids = append(ids, id)
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	var out []*session.Session
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		arr, err := s.client.Do(ctx, s.client.B().Hmget().Key(s.p+"s").Field(ids[:n]...).Build()).ToArray()
		if err != nil {
			return nil, s.failed(err)
		}
		out = append(out, s.sessionsOf(arr)...)
		ids = ids[n:]
	}
	return out, nil
}

// All implements poll.Store, a page of the sessions hash at a time.
func (s *Store) All() ([]*session.Session, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 4*s.tmo)
	defer cancel()
	var out []*session.Session
	seen := make(map[string]struct{})
	for cursor := uint64(0); ; {
		e, err := s.client.Do(ctx, s.client.B().Hscan().Key(s.p+"s").Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, s.failed(err)
		}
		for i := 1; i < len(e.Elements); i += 2 { // field, value, …; a scan may repeat one
			if _, dup := seen[e.Elements[i-1]]; dup {
				continue
			}
			seen[e.Elements[i-1]] = struct{}{}
			if sess, err := s.decode(e.Elements[i]); err == nil {
				out = append(out, sess)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return out, nil
		}
	}
}

// Counts implements poll.Store: the whole cluster's.
func (s *Store) Counts() (sessions, users int) {
	st, err := s.stats()
	if err != nil {
		return 0, 0
	}
	return int(st[4]), int(st[5])
}

// Subscribe implements poll.Store. It changes the record only if no one
// changed it since it was read, and reads again if someone did.
func (s *Store) Subscribe(id string, add, remove []string, max int) (*session.Session, error) {
	for range 16 {
		r, err := s.exec(lookupScript, "s", id)
		if err != nil {
			return nil, err
		}
		arr, err := r.ToArray()
		if err != nil || len(arr) == 0 {
			return nil, poll.ErrSessionNotFound
		}
		rec, err := arr[0].ToString()
		if err != nil {
			return nil, poll.ErrSessionNotFound
		}
		cur, err := s.decode(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", poll.ErrStorage, err)
		}
		next, err := poll.Resubscribed(cur, add, remove, max)
		if err != nil || next == cur {
			return next, err
		}
		var gone, added []string
		for _, t := range cur.Topics {
			if !slices.Contains(next.Topics, t) {
				gone = append(gone, t)
			}
		}
		for _, t := range next.Topics {
			if !slices.Contains(cur.Topics, t) {
				added = append(added, t)
			}
		}
		args := append([]string{id, rec, string(codec.Session(next)), strings.Join(next.Topics, "\n"), strconv.Itoa(len(gone))}, gone...)
		r, err = s.exec(resubscribeScript, append(args, added...)...)
		if err != nil {
			return nil, err
		}
		switch n, _ := r.AsInt64(); n {
		case 1:
			return next, nil
		case -1:
			return nil, poll.ErrSessionNotFound
		}
	}
	return nil, fmt.Errorf("%w: redis: the session changed under 16 subscribes in a row", poll.ErrStorage)
}

// Append implements poll.Store. The parked poll, on this node or
// another, is answered by the store: the Wakeup is always empty.
func (s *Store) Append(id string, e *poll.Envelope) (poll.Wakeup, error) {
	r, err := s.exec(appendScript, append([]string{id, strconv.Itoa(s.cfg.MaxMailbox)}, envArgs(e)...)...)
	if err != nil {
		return poll.Wakeup{}, err
	}
	arr, err := reply(r)
	if err != nil {
		return poll.Wakeup{}, err
	}
	s.setStored(arr[0])
	s.answerTakes(arr[1:])
	return poll.Wakeup{}, nil
}

// fanOutBatch is how many mailboxes one fan-out script appends to at most.
const fanOutBatch = 1000

// FanOut implements poll.Store: a thousand mailboxes a script. A script
// that fails ends it with its error (the earlier ones have delivered).
func (s *Store) FanOut(sessions []*session.Session, e *poll.Envelope) (wake []poll.Wakeup, delivered, rejected int, err error) {
	head := append([]string{strconv.Itoa(s.cfg.MaxMailbox)}, envArgs(e)...)
	for len(sessions) > 0 {
		n := min(len(sessions), fanOutBatch)
		args := append([]string(nil), head...)
		for _, sess := range sessions[:n] {
			args = append(args, sess.ID)
		}
		sessions = sessions[n:]
		r, err := s.exec(fanoutScript, args...)
		if err != nil {
			return nil, delivered, rejected, err
		}
		arr, err := reply(r)
		if err == nil && len(arr) < 3 {
			err = fmt.Errorf("%w: redis: a fan-out answered %d fields", poll.ErrStorage, len(arr))
		}
		if err != nil {
			return nil, delivered, rejected, err
		}
		d, _ := arr[0].AsInt64()
		j, _ := arr[1].AsInt64()
		delivered += int(d)
		rejected += int(j)
		s.setStored(arr[2])
		s.answerTakes(arr[3:])
	}
	return nil, delivered, rejected, nil
}

// deliver runs the deliver script to a device ("d") or user ("u").
func (s *Store) deliver(kind, name string, e *poll.Envelope, limit int, client bool) (res poll.Result, err error) {
	cl := "0"
	if client {
		cl = "1"
	}
	args := append([]string{kind, name, strconv.Itoa(s.cfg.MaxMailbox), strconv.Itoa(limit), cl,
		ms(s.cfg.Now()), strconv.FormatInt(s.cfg.OfflineTTL.Milliseconds(), 10)}, envArgs(e)...)
	r, err := s.exec(deliverScript, args...)
	if err != nil {
		return res, err
	}
	arr, err := reply(r)
	if err != nil {
		return res, err
	}
	d, _ := arr[0].AsInt64()
	j, _ := arr[1].AsInt64()
	st, _ := arr[2].AsInt64()
	res.Delivered, res.Rejected, res.Stored = int(d), int(j), int(st)
	s.setStored(arr[3])
	s.answerTakes(arr[4:])
	return res, nil
}

// DeliverDevice implements poll.Store.
func (s *Store) DeliverDevice(device string, e *poll.Envelope, limit int, client bool) (u poll.Wakeup, delivered, stored bool, err error) {
	res, err := s.deliver("d", device, e, limit, client)
	return poll.Wakeup{}, res.Delivered > 0, res.Stored > 0, err
}

// DeliverUser implements poll.Store.
func (s *Store) DeliverUser(user string, e *poll.Envelope, limit int, client bool) (wake []poll.Wakeup, res poll.Result, err error) {
	res, err = s.deliver("u", user, e, limit, client)
	return nil, res, err
}

// Ack implements poll.Store.
func (s *Store) Ack(id string, ack uint64) error {
	r, err := s.exec(ackScript, id, strconv.FormatUint(ack, 10))
	if err != nil {
		return err
	}
	arr, err := reply(r)
	if err != nil {
		return err
	}
	s.setStored(arr[0])
	return nil
}

// setStored keeps the stored bytes a script answered.
func (s *Store) setStored(m rueidis.RedisMessage) {
	if n, err := m.AsInt64(); err == nil {
		s.stored.Store(n)
	}
}

// pendingTTL is how long an idempotency key stays pending (recorded, its
// push under way) unless Settle or Forget ends that sooner: past it, a
// push whose node died or lost Redis mid-way no longer holds its key.
func (s *Store) pendingTTL() time.Duration { return max(10*time.Second, 5*s.tmo) }

// Remember implements poll.Store. The key is recorded as pending (for
// pendingTTL) until Settle gives it its result and ttl: a push with the
// same key meanwhile waits for that outcome, so that it is never answered
// "duplicate" for a push that then fails, nor delivered twice while the
// first is under way. If the first push's node dies, or loses Redis, the
// pending key lapses and a retry delivers (at least once, as a retry of
// an unanswered request does with the memory store).
func (s *Store) Remember(key string, r poll.Result, ttl time.Duration) (poll.Result, bool) {
	give := time.Now().Add(s.pendingTTL() + s.tmo)
	mine := "p:" + s.node + ":" + strconv.FormatUint(s.gen.Add(1), 36)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		now := s.cfg.Now()
		res, err := s.exec(rememberScript, key, mine, ms(now.Add(s.pendingTTL())), ms(now), "")
		if err != nil {
			return poll.Result{}, false // the push fails on Redis too
		}
		v, err := res.ToString()
		if err != nil { // nil: recorded now, pending as ours
			s.pendingMu.Lock()
			s.pending[key] = mine
			s.pendingMu.Unlock()
			return poll.Result{}, false
		}
		if !strings.HasPrefix(v, "p:") {
			if _, prev, err := codec.ParseID([]byte(v)); err == nil {
				return prev, true
			}
			return poll.Result{}, false
		}
		if time.Now().After(give) {
			return poll.Result{}, false
		}
		select { // another push with the key is under way: its outcome decides
		case <-time.After(wait):
		case <-s.ctx.Done():
			return poll.Result{}, false
		}
	}
}

// renewPending extends the pending idempotency keys of this node's pushes
// still under way (every 2 s, by watch): a key lapses only when its node
// stops renewing it (it died, or lost Redis), never under a push that is
// merely slow, such as a fan-out to many sessions.
func (s *Store) renewPending() {
	s.pendingMu.Lock()
	keys := make(map[string]string, len(s.pending))
	for k, v := range s.pending {
		keys[k] = v
	}
	s.pendingMu.Unlock()
	exp := ms(s.cfg.Now().Add(s.pendingTTL()))
	for k, v := range keys {
		_, _ = s.exec(renewScript, k, v, exp)
	}
}

// Settle implements poll.Store.
func (s *Store) Settle(key string, r poll.Result, ttl time.Duration) {
	s.pendingMu.Lock()
	delete(s.pending, key)
	s.pendingMu.Unlock()
	exp := s.cfg.Now().Add(ttl)
	if _, err := s.exec(rememberScript, key, string(codec.ID(exp, r)), ms(exp), ms(s.cfg.Now()), "settle"); err != nil {
		s.log.Warn("redis: an idempotency key stays pending until it lapses", "err", err)
	}
}

// Forget implements poll.Store. A key this node's push holds pending goes
// only if it still holds it (not another push's, recorded after it
// lapsed); any other key goes whatever it holds.
func (s *Store) Forget(key string) {
	s.pendingMu.Lock()
	mine := s.pending[key] // "" when this node holds no pending key
	delete(s.pending, key)
	s.pendingMu.Unlock()
	if _, err := s.exec(forgetScript, key, mine); err != nil {
		s.log.Warn("redis: a failed push's idempotency key stays pending until it lapses", "err", err)
	}
}

// Cleanup implements poll.Store.
func (s *Store) Cleanup(now time.Time) int {
	dropped := 0
	for range 1000 {
		r, err := s.exec(cleanupScript, ms(now), strconv.FormatInt(s.cfg.OfflineTTL.Milliseconds(), 10), "1000")
		if err != nil {
			break
		}
		arr, err := r.ToArray()
		if err != nil || len(arr) != 2 {
			break
		}
		n, _ := arr[0].AsInt64()
		more, _ := arr[1].AsInt64()
		dropped += int(n)
		if more == 0 {
			break
		}
	}
	s.refreshStored()
	return dropped
}

// stats reads {backlog, offline, stored bytes, ids, sessions, users}.
func (s *Store) stats() ([]int64, error) {
	r, err := s.exec(statsScript)
	if err != nil {
		return nil, err
	}
	arr, err := r.ToArray()
	if err != nil || len(arr) != 6 {
		return nil, fmt.Errorf("%w: redis: stats: %v", poll.ErrStorage, err)
	}
	out := make([]int64, 6)
	for i, m := range arr {
		out[i], _ = m.AsInt64()
	}
	return out, nil
}

// Stats implements poll.Store: Parked counts this node's parked polls,
// the rest is the whole cluster's.
func (s *Store) Stats() poll.StoreStats {
	st := poll.StoreStats{Parked: int(s.nPark.Load()), Store: "redis"}
	if v, err := s.stats(); err == nil {
		st.Backlog, st.OfflineMessages, st.StoredBytes, st.IdempotencyIDs = int(v[0]), int(v[1]), v[2], int(v[3])
		s.stored.Store(v[2])
	}
	return st
}

// StoredBytes implements poll.Store: as the last script that changed it,
// or the last quarter-second refresh, saw it.
func (s *Store) StoredBytes() int64 { return s.stored.Load() }
