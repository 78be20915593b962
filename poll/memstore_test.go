package poll_test

import (
	"testing"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/poll/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, storetest.Impl{New: func(t *testing.T, cfg poll.StoreConfig) poll.Store { return poll.NewMemoryStore(cfg) }})
}

// opLog is a Journal that keeps what it hears.
type opLog struct{ ops []poll.Op }

func (l *opLog) Record(op poll.Op) { l.ops = append(l.ops, op) }
func (l *opLog) Begin()            {}
func (l *opLog) End()              {}

// A journal hears of an idempotency key with the push's outcome, after
// its delivery, never at Remember: written first, a crash before the
// delivery would leave a key whose retry is answered "duplicate" for a
// message that was lost.
func TestIdempotencyKeyIsJournaledOnlyWhenSettled(t *testing.T) {
	st := poll.NewMemoryStore(poll.Config{}.StoreConfig())
	var log opLog
	st.Attach(&log)
	if _, seen := st.Remember("k", poll.Result{ID: "m1"}, time.Hour); seen {
		t.Fatal("a new key was seen")
	}
	for _, op := range log.ops {
		if op.Kind == poll.OpID {
			t.Fatalf("Remember journaled the key before its delivery: %+v", op)
		}
	}
	if prev, seen := st.Remember("k", poll.Result{ID: "m2"}, time.Hour); !seen || prev.ID != "m1" {
		t.Fatalf("the remembered key: %+v %v", prev, seen)
	}
	st.Settle("k", poll.Result{ID: "m1", Delivered: 1}, time.Hour)
	var got []poll.Op
	for _, op := range log.ops {
		if op.Kind == poll.OpID {
			got = append(got, op)
		}
	}
	if len(got) != 1 || got[0].ID != "k" || got[0].Result.Delivered != 1 {
		t.Fatalf("after Settle the journal heard %+v, want the key once with its outcome", got)
	}
}
