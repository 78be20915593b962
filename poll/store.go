package poll

import (
	"context"
	"errors"
	"time"

	"github.com/longpoll/longpoll/session"
)

// ErrStorage: a durable store could not write (disk full, an I/O error):
// what the request would have stored is not durable, and the store takes
// no more writes until the server is restarted (Store.Err says why).
var ErrStorage = errors.New("storage failed")

// ErrUnreachable: a shared store (Redis) cannot be reached, or cannot
// serve for now (loading its data, a cluster without its slots). An
// operation that failed so may have been done or not; the store takes
// requests again by itself once it answers.
var ErrUnreachable = errors.New("the shared store cannot be reached")

// Store keeps the hub's state: the online sessions (with their device,
// user, topics, permit and idle timer), each session's mailbox of
// unacknowledged messages (seq and cursor), the offline lists of devices
// and users, the idempotency ids, and when devices and users were last
// online. The hub keeps nothing of its own: it names sessions by id, the
// store answers (a parked poll's waiter and timer are the store's, in the
// process that holds the poll), and the hub routes, notifies and observes.
//
// Every method is atomic: a connect, an end, a delivery to a device or a
// user happens whole or not at all, in one order for everyone. The
// operations that move messages between places (a replacement carrying
// unacknowledged messages to the new session, a connect draining the
// offline lists into the new mailbox, an end moving what is left to the
// device's offline list) are single operations, not sequences the hub
// strings together. Implementations take ids and values and never hand
// the hub pointers into their own state but the session values
// (immutable), so that a shared store (Redis) can do each operation as
// one script or transaction on keys of its own.
//
// MemoryStore keeps everything in the process; diskstore.Store writes it
// through to a data directory as well and reads it back at start;
// redisstore.Store keeps it in Redis, where several nodes serve the same
// sessions.
// The conformance suite (package storetest) runs the same table of
// behaviours against each.
type Store interface {
	// Connect makes s online with a new, empty mailbox. A session of s's
	// device ends (it is returned): its parked poll is answered
	// ErrSessionClosed, and its unacknowledged messages move, in order, to
	// s's mailbox, followed by the offline messages of s's device and
	// user that have not expired at now, in send order. With maxSessions
	// > 0 sessions online, a connect that replaces none fails with
	// ErrTooManySessions.
	Connect(s *session.Session, maxSessions int, now time.Time) (replaced *session.Session, err error)
	// End takes the session with id offline (ErrSessionNotFound if it is
	// not online), first acknowledging its messages up to ack when hasAck
	// (ErrInvalidCursor changes nothing). Its parked poll is answered
	// closeErr; its unacknowledged messages, but system ($…) and expired
	// ones, move to its device's offline list. Its device and user are
	// recorded as online until now.
	End(id string, ack uint64, hasAck bool, closeErr error, now time.Time) (*session.Session, error)
	// Expire ends, as End with ErrSessionNotFound, every session idle for
	// the session ttl at now but those whose mailbox has a parked poll
	// (refreshed instead), and returns them.
	Expire(now time.Time) []*session.Session

	// Session returns the online session with id (ErrSessionNotFound, or
	// the store's failure: a shared store that cannot be reached knows no
	// session). Touch does too, and refreshes its idle timer; Refresh
	// refreshes a session the caller holds and reports whether it is
	// still online (see session.Registry).
	Session(id string) (*session.Session, error)
	Touch(id string) (*session.Session, error)
	Refresh(s *session.Session) bool
	// ByDevice, ByUser, ByTopic and All return the online sessions of a
	// device (or nil), a user, a topic, and all of them, or the store's
	// failure: "nobody" must never stand for "could not look" (a push
	// accepted as reaching no one, a disconnect of no one).
	ByDevice(device string) (*session.Session, error)
	ByUser(user string) ([]*session.Session, error)
	ByTopic(topic string) ([]*session.Session, error)
	All() ([]*session.Session, error)
	// Counts returns how many sessions and distinct users are online.
	Counts() (sessions, users int)

	// Subscribe changes the topics of the online session with id: it
	// adds add (those it lacks, in order) and then drops remove, as one
	// change, durable with the session (its OpSession record). More than
	// max topics fail with session.ErrInvalidPayload and change nothing.
	// It returns the session as it now is: a new value when the topics
	// changed (session.Session.WithTopics), the session before it then
	// offline to Refresh. ErrSessionNotFound when it is not online.
	Subscribe(id string, add, remove []string, max int) (*session.Session, error)

	// The mailbox of the online session with id: its unacknowledged
	// messages in seq order (the store assigns each seq, atomically with
	// the append), acknowledged by a cursor, and its one parked poll, a
	// waiter of this process (a Wakeup answers it). Each method names the
	// session by id; a session that is not online is ErrSessionNotFound (a
	// mailbox just retired by an end or a replacement may answer
	// ErrSessionClosed). A replaced session's mailbox forwards what is
	// appended to it a moment after to its successor.

	// Append appends e at the session's next seq; at the mailbox limit it
	// fails with ErrMailboxFull. The Wakeup is its parked poll to answer
	// (Run it after, holding no lock).
	Append(id string, e *Envelope) (Wakeup, error)
	// FanOut appends e to the mailbox of each of sessions still online (a
	// topic's subscribers, everyone) and returns the parked polls to
	// answer, how many mailboxes took e and how many were full. An error
	// means some mailboxes may not have it (a shared store that failed
	// part-way): the push is not accepted.
	FanOut(sessions []*session.Session, e *Envelope) (wake []Wakeup, delivered, rejected int, err error)
	// Wait acknowledges the messages up to ack (when hasAck;
	// ErrInvalidCursor beyond the newest changes nothing) and returns the
	// pending ones, at most MaxBatch and about MaxAnswerBytes, waiting
	// while there are none until one arrives, ctx ends or stop is closed
	// (both: nil, nil), a newer poll takes over (ErrSuperseded) or the
	// session ends (ErrSessionClosed, or ErrSessionNotFound at expiry).
	Wait(ctx context.Context, id string, stop <-chan struct{}, ack uint64, hasAck bool) ([]Message, error)
	// Park is Wait without a waiting goroutine: pending messages or an
	// error come back at once (parked false); otherwise done is called
	// exactly once, later, from another goroutine, with what Wait would
	// return (and nil, nil when hold passes or WakeAll runs). t (may be
	// nil) owns the parked poll (Cancel), and may cache what the store
	// needs to find the mailbox again for the same connection.
	Park(t *Ticket, id string, ack uint64, hasAck bool, hold time.Duration, done func([]Message, error) func()) (msgs []Message, err error, parked bool)
	// Cancel ends the poll t parked on the session with id, if it is
	// still parked: its done gets ErrCanceled and its messages stay. It
	// reports whether there was such a poll.
	Cancel(id string, t *Ticket) bool
	// Ack acknowledges the messages up to ack, as a Wait with that cursor
	// would, without waiting.
	Ack(id string, ack uint64) error

	// DeliverDevice appends e to the mailbox of device's online session
	// (delivered), or else stores it in the device's offline list (stored,
	// at most limit there: ErrMailboxFull beyond) unless client is set and
	// the device has not been online within the offline ttl. The Wakeup
	// is the parked poll to answer, after.
	DeliverDevice(device string, e *Envelope, limit int, client bool) (u Wakeup, delivered, stored bool, err error)
	// DeliverUser is DeliverDevice for a user: every online session of
	// the user gets e (full mailboxes are counted in res.Rejected), or,
	// with none online, the user's offline list.
	DeliverUser(user string, e *Envelope, limit int, client bool) (wake []Wakeup, res Result, err error)

	// Remember records an idempotency key with the result of its push
	// until ttl has passed. When key is already recorded, it records
	// nothing and returns the recorded result and true. Settle replaces
	// the result of a recorded key; Forget drops it (a push that failed
	// does not consume its key).
	Remember(key string, r Result, ttl time.Duration) (prev Result, seen bool)
	Settle(key string, r Result, ttl time.Duration)
	Forget(key string)

	// Cleanup drops the offline messages and idempotency ids past their
	// ttl at now, and forgets devices and users offline for longer than
	// the offline ttl. It returns how many offline messages it dropped.
	Cleanup(now time.Time) (offlineExpired int)
	// Stats returns the store's counts: what Hub.Stats shows of it.
	Stats() StoreStats
	// StoredBytes is Stats().StoredBytes, cheaply (every push asks).
	StoredBytes() int64
	// Flush returns once everything written before it was called is
	// durable (a 202 means that); an error means it is not (ErrStorage).
	// A memory store has nothing to wait for.
	Flush() error
	// WakeAll answers every parked poll at once (shutdown).
	WakeAll()
	// Err is why the store stopped taking writes (wrapping ErrStorage),
	// or nil while it is healthy.
	Err() error
}

// StoreStats are a store's counts.
type StoreStats struct {
	// Parked counts parked polls; Backlog unacknowledged messages in
	// mailboxes; OfflineMessages messages in offline lists.
	Parked, Backlog, OfflineMessages int
	// StoredBytes is what the store holds, as Config.MaxStoredBytes
	// counts it (messages, idempotency ids, recently online names);
	// IdempotencyIDs the ids among it.
	StoredBytes    int64
	IdempotencyIDs int
	// Store names the implementation: "memory", "disk", "redis".
	Store string
}
