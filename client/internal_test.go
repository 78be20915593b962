package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := DefaultBackoff
	for attempt, base := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		if got := b.delay(attempt, 0); got != base {
			t.Errorf("attempt %d, no jitter: %v, want %v", attempt, got, base)
		}
		if got := b.delay(attempt, 0.999999); got < base/2 || got > base/2+time.Millisecond {
			t.Errorf("attempt %d, most jitter: %v, want about %v", attempt, got, base/2)
		}
		for range 100 {
			if got := b.Delay(attempt); got < base/2 || got > base {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, got, base/2, base)
			}
		}
	}
	if got := (Backoff{}).delay(1, 0); got != time.Second {
		t.Errorf("zero Backoff: %v, want the default's 1s", got)
	}
	if got := (Backoff{Initial: time.Millisecond, Max: time.Hour, Factor: 10}).delay(3, 0); got != time.Second {
		t.Errorf("factor 10: %v", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":     0,
		"1":    time.Second,
		"100":  100 * time.Second,
		"0":    0,
		"-5":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
		"99999999999": 24 * time.Hour,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}

func TestErrorIsAndParse(t *testing.T) {
	h := http.Header{"Retry-After": {"3"}}
	e := parseError(429, h, []byte(`{"error":{"code":"rate_limited","message":"slow down"}}`))
	if e.Status != 429 || e.Code != "rate_limited" || e.Message != "slow down" || e.RetryAfter != 3*time.Second {
		t.Fatalf("%+v", e)
	}
	wrapped := fmt.Errorf("pushing: %w", e)
	if !errors.Is(wrapped, ErrRateLimited) || errors.Is(wrapped, ErrMailboxFull) || !e.Retryable() {
		t.Fatal("errors.Is does not match by code")
	}
	if e.Error() != "longpoll: 429 rate_limited: slow down" || ErrRateLimited.Error() != "longpoll: rate_limited" {
		t.Fatalf("%q %q", e.Error(), ErrRateLimited.Error())
	}
	html := parseError(502, http.Header{}, []byte("<html>bad gateway</html>"))
	if html.Code != "http_502" || html.Message != "<html>bad gateway</html>" || !html.Retryable() {
		t.Fatalf("%+v", html)
	}
	if empty := parseError(404, http.Header{}, nil); empty.Code != "http_404" || empty.Message != "Not Found" || empty.Retryable() {
		t.Fatalf("%+v", empty)
	}
}

func TestPushJSON(t *testing.T) {
	for _, c := range []struct {
		p    Push
		want string
	}{
		{Push{Data: 1}, `{"data":1}`},
		{Push{}, `{"data":null}`},
		{Push{To: Target{UserID: "u"}, Topic: "t", Data: json.RawMessage(`{"a":1}`), TTL: 1500 * time.Millisecond, ID: "k"}, `{"to":{"userId":"u"},"topic":"t","data":{"a":1},"ttl":2,"id":"k"}`},
		{Push{To: Target{Topic: "news"}, Data: []byte(`"x"`), TTL: time.Hour}, `{"to":{"topic":"news"},"data":"x","ttl":3600}`},
	} {
		b, err := json.Marshal(c.p)
		if err != nil || string(b) != c.want {
			t.Errorf("%+v: %s %v, want %s", c.p, b, err, c.want)
		}
	}
	if _, err := json.Marshal(Push{Data: json.RawMessage(`{bad`)}); err == nil {
		t.Error("invalid raw data accepted")
	}
}

func TestBatchResultJSON(t *testing.T) {
	var out []BatchResult
	if err := json.Unmarshal([]byte(`[{"id":"m_1","delivered":1,"stored":0,"rejected":0},{"error":{"code":"mailbox_full","message":"full"}}]`), &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].ID != "m_1" || out[0].Err != nil || !errors.Is(out[1].Err, ErrMailboxFull) || out[1].Err.Message != "full" {
		t.Fatalf("%+v", out)
	}
	back, err := json.Marshal(out)
	if err != nil || string(back) != `[{"id":"m_1","delivered":1,"stored":0,"rejected":0},{"error":{"code":"mailbox_full","message":"full"}}]` {
		t.Fatalf("round trip: %s %v", back, err)
	}
}

func TestIDsRing(t *testing.T) {
	s := newIDs(2)
	s.add("a")
	s.add("b")
	s.add("b")
	if !s.has("a") || !s.has("b") {
		t.Fatal("forgot too early")
	}
	s.add("c")
	if s.has("a") || !s.has("b") || !s.has("c") || s.has("") {
		t.Fatal("window of 2 not kept")
	}
	none := newIDs(0)
	none.add("x")
	if none.has("x") {
		t.Fatal("a window of 0 remembers")
	}
}
