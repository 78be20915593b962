package api_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/diskstore"
	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/wire"
)

// With a durable store whose disk fails (a write error injected through
// the engine's file system, as a full disk gives), a push, a send, a batch
// of each and a connect answer 503 unavailable, /healthz answers 503 naming the cause,
// and nothing of the refused requests is in the directory after a restart.
func TestStorageWriteErrorAnswers503(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.EIO
		}
		return nil
	})
	pcfg := poll.Config{Render: wire.Render}
	st, err := diskstore.Open(dir, pcfg.StoreConfig(), diskstore.Options{FS: errorfs.Wrap(vfs.Default, inj)})
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Store = st
	s := newServer(t, pcfg, api.Config{})
	sid := s.connect(t, "lamp", "alice")
	s.pushTo(t, sid, `"kept"`)

	failing.Store(true)
	rec := s.do(t, http.MethodPost, "/push", ctJSON, `{"to":{"sessionId":"`+sid+`"},"data":"refused"}`)
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
	rec = s.do(t, http.MethodPost, "/send?sessionId="+sid, ctJSON, `{"to":{"userId":"alice"},"data":"refused"}`)
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
	rec = s.do(t, http.MethodPost, "/push", ctJSON, `[{"to":{"sessionId":"`+sid+`"},"data":"refused"},{"to":{"userId":"alice"},"data":"refused"}]`)
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable") // a batch is refused whole
	rec = s.do(t, http.MethodPost, "/send?sessionId="+sid, ctJSON, `[{"to":{"userId":"alice"},"data":"refused"},{"to":{"userId":"alice"},"data":"refused"}]`)
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
	rec = s.do(t, http.MethodPost, "/connect", ctJSON, `{"deviceId":"radio"}`)
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
	rec = s.do(t, http.MethodGet, "/healthz", "", "")
	wantError(t, rec, http.StatusServiceUnavailable, "unavailable")
	if body := rec.Body.String(); !strings.Contains(body, syscall.EIO.Error()) || !strings.Contains(body, "restart") {
		t.Errorf("healthz of a failed store does not name the cause and what to do: %s", body)
	}
	if sess, _ := s.hub.OnlineDevice("radio"); sess != nil {
		t.Fatal("a connect refused with 503 left its session online")
	}
	s.hub.Close()
	st.Close()

	again, err := diskstore.Open(dir, pcfg.StoreConfig(), diskstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	pcfg.Store = again
	s2 := newServer(t, pcfg, api.Config{})
	rec = s2.do(t, http.MethodGet, "/data?timeout=0&sessionId="+sid, "", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"kept"`) || strings.Contains(rec.Body.String(), "refused") {
		t.Fatalf("after a restart: %d %s, want the message written before the failure only", rec.Code, rec.Body)
	}
	if sess, _ := s2.hub.OnlineDevice("radio"); sess != nil {
		t.Fatal("the refused connect is online after a restart")
	}
}
