package poll_test

import (
	"testing"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/poll/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, storetest.Impl{New: func(t *testing.T, cfg poll.StoreConfig) poll.Store { return poll.NewMemoryStore(cfg) }})
}
