package poll

import (
	"encoding/json"
	"time"

	"github.com/longpoll/longpoll/session"
)

// A Journal hears every change to what a MemoryStore must keep across a
// restart, as it happens, so that a durable store (DiskStore) can write the
// changes through and read them back at start (the MemoryStore.Restore
// methods).
//
// Record is called with the lock held that orders the change in memory
// (the store's, a mailbox's, the offline lists', the ids'),
// so two records about the same key arrive in the order the changes
// happened. Record must be quick and must not call back into the store.
//
// A journaled store shows a mailbox's messages to polls only once the
// journal has them durable: the journal calls Mailbox.Release (and runs
// the wakeups it returns) after each write. Nothing a client has seen can
// then be lost in a crash, so seq numbers never repeat.
type Journal interface {
	Record(op Op)
	// Begin and End bracket the records of one store operation (a
	// connect, an end) that must be durable whole or not at all: the
	// journal writes no batch that holds part of it. Brackets do not nest
	// within one operation; records of other goroutines may fall between.
	Begin()
	End()
}

// OpKind says what an Op changed.
type OpKind uint8

// The kinds of change a Journal hears.
const (
	// OpSession: Session came online, or changed its topics (its whole
	// record, which replaces the one before). OpSessionEnd: the session with ID went offline;
	// its mailbox's messages are removed before (OpRemove).
	OpSession OpKind = iota + 1
	OpSessionEnd
	// OpAppend: Env was appended to the mailbox of the session with ID at
	// Seq (Box is the mailbox, for Release). OpRemove: the message at Seq
	// left that mailbox (acknowledged, moved or dropped); with Last, it
	// was the newest, and the mailbox is empty (a journal that keeps the
	// newest seq only through the messages must keep it now).
	OpAppend
	OpRemove
	// OpOfflinePut: Env joined the offline list ID (a device's or user's
	// key). OpOfflineRemove: it left it (taken at a connect, or expired).
	OpOfflinePut
	OpOfflineRemove
	// OpID: the idempotency key ID now stands for Result until Expires.
	// OpIDGone: it was forgotten or expired.
	OpID
	OpIDGone
	// OpName: the device or user key ID was online until Time (a client's
	// send to it is kept offline). OpNameGone: it was forgotten.
	OpName
	OpNameGone
)

// Op is one change a Journal hears; which fields are set depends on Kind.
type Op struct {
	Kind    OpKind
	ID      string           // session id, offline key, idempotency key or name key
	Seq     uint64           // OpAppend, OpRemove
	Last    bool             // OpRemove
	Env     *Envelope        // OpAppend, OpOfflinePut, OpOfflineRemove
	Box     *Mailbox         // OpAppend
	Session *session.Session // OpSession
	Result  Result           // OpID
	Time    time.Time        // OpID: when it expires; OpName: when last online
}

// Order is the message's acceptance order (offline lists are sorted by
// it); a journal keeps it to restore the message.
func (e *Envelope) Order() uint64 { return e.order }

// RestoreEnvelope makes the message a journal kept: the fields of
// NewEnvelope's, as they were, and its order. Messages accepted later get
// a larger order. The caller renders it (Rendered) as the hub would.
func RestoreEnvelope(id, topic, from string, data json.RawMessage, sentAt, expires time.Time, order uint64) *Envelope {
	for {
		cur := orderCounter.Load()
		if cur >= order || orderCounter.CompareAndSwap(cur, order) {
			break
		}
	}
	return &Envelope{ID: id, Topic: topic, From: from, Data: data, SentAt: sentAt, Expires: expires, order: order}
}
