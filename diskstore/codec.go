package diskstore

import (
	"encoding/binary"
	"fmt"

	"github.com/longpoll/longpoll/internal/codec"
)

// The layout of the data directory's keys. Every key starts with one byte
// naming its kind; ids and names follow as they are, and seqs and orders as
// 8 bytes big-endian at the end, so that a kind's keys sort by session (or
// list) and then by seq (or order).
//
//	v                       format version (formatVersion)
//	s <sid>                 session record (encodeSession)
//	r <n>                   the messages one write appended to mailboxes (8-byte
//	                        number, in write order; records.go): session, seq and
//	                        message (codec.Envelope) of each
//	a <sid>                 the seq up to which messages left the session's mailbox
//	                        (8 bytes): a record's message above it is still there;
//	                        the newest seq the mailbox gave is its newest message's,
//	                        or this when it holds none
//	m <sid> <seq>           a message in the session's mailbox, written by earlier
//	                        versions (read, deleted when it leaves; not written)
//	q <sid>                 earlier versions: the seq up to which the mailbox was
//	                        acknowledged when it last became empty (read, not written)
//	o <listKey> <order>     a message in an offline list ("device:…", "user:…")
//	i <idempotency key>     expiry and result of an idempotency key (encodeID)
//	n <nameKey>             when a device or user was last online (8 bytes, Unix ns)
//
// An offline message is written whole under each list that holds it; a
// fan-out's message is written once a record. Reading back, the copies of
// one message id become one envelope again.
const (
	kindVersion = 'v'
	kindSession = 's'
	kindLastSeq = 'q'
	kindMessage = 'm'
	kindRecord  = 'r'
	kindAcked   = 'a'
	kindOffline = 'o'
	kindID      = 'i'
	kindName    = 'n'
)

// formatVersion is the value of the v key: what this code writes and
// reads. It reads formatVersion1 too (mailbox messages under 'm' keys,
// 'q' keys), and marks such a directory as formatVersion when it opens
// it: a longpoll that reads only formatVersion1 refuses it then.
const (
	formatVersion  = "longpoll-data/2"
	formatVersion1 = "longpoll-data/1"
)

// errCorrupt wraps what a record that cannot be read says.
var errCorrupt = codec.ErrCorrupt

func appendKey(dst []byte, kind byte, id string) []byte {
	return append(append(dst, kind), id...)
}

// appendKeyN appends a key with a trailing 8-byte number (a seq, an
// order).
func appendKeyN(dst []byte, kind byte, id string, n uint64) []byte {
	return binary.BigEndian.AppendUint64(appendKey(dst, kind, id), n)
}

// splitN splits a keyN key into its id and number.
func splitN(k []byte) (string, uint64, error) {
	if len(k) < 1+8 {
		return "", 0, fmt.Errorf("%w: key %q too short", errCorrupt, k)
	}
	return string(k[1 : len(k)-8]), binary.BigEndian.Uint64(k[len(k)-8:]), nil
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func readU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %d bytes for a number", errCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
