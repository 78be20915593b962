package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/longpoll/longpoll/poll"
)

// FuzzRender checks that Render's hand-written encoding is byte for byte
// json.Marshal's wherever it is used.
func FuzzRender(f *testing.F) {
	for _, s := range []string{`{"text":"door open"}`, `[1, 2]`, `"a\"b\\"`, `"<b>"`, "\"\u2028\"", `{"a":"\u00e9"}`, `null`, `1e400`} {
		f.Add("alerts", "u1/d1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, topic, from string, data []byte) {
		if !json.Valid(data) {
			return
		}
		e := &poll.Envelope{ID: "m_abc", Topic: topic, From: from, Data: data, SentAt: time.Date(2026, 11, 22, 8, 9, 10, 123456789, time.FixedZone("x", 3600))}
		if !plainString(e.ID) || !plainString(topic) || !plainString(from) || !plainJSON(data) {
			return
		}
		got := appendMessageBody(nil, e)
		want, err := json.Marshal(wireMessage{ID: e.ID, Topic: topic, From: from, Data: data, SentAt: e.SentAt.UTC().Format(poll.TimeFormat)})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[1:]) {
			t.Fatalf("appendMessageBody:\n%s\njson.Marshal:\n%s", got, want[1:])
		}
	})
}

func TestPlainJSON(t *testing.T) {
	for _, c := range []struct {
		data string
		ok   bool
	}{
		{`{"text":"door open"}`, true},
		{`{"a":"x\" y"}`, true},
		{`{"a": 1}`, false},
		{"[1,\n2]", false},
		{`"<"`, false},
		{`"a&b"`, false},
		{"\"\u2028\"", false},
		{`"\\"`, true},
	} {
		if got := plainJSON([]byte(c.data)); got != c.ok {
			t.Errorf("plainJSON(%q) = %v, want %v", c.data, got, c.ok)
		}
	}
}

// Render refuses invalid data that it does not copy as is; AppendMessage
// writes such a message's data as null rather than invalid JSON.
func TestRenderRefusesInvalidData(t *testing.T) {
	for _, d := range []string{`{"a": 1`, "{\"a\":1}\n}", `"<x`} {
		e := poll.NewEnvelope("t", "", json.RawMessage(d), time.Now(), time.Hour)
		if _, err := Render(e); err == nil {
			t.Errorf("Render accepted %q", d)
		}
		if b := AppendMessage(nil, poll.Message{Seq: 1, Envelope: e}); !json.Valid(b) || !bytes.Contains(b, []byte(`"data":null`)) {
			t.Errorf("AppendMessage wrote %s for data %q", b, d)
		}
	}
}

func TestSentAt(t *testing.T) {
	base := time.Date(2026, 11, 22, 8, 0, 0, 999_000_000, time.FixedZone("x", 3600))
	for _, d := range []time.Duration{0, 500 * time.Microsecond, time.Millisecond, 0, time.Hour} {
		at := base.Add(d)
		if got, want := string(appendSentAt(nil, at)), at.UTC().Format(poll.TimeFormat); got != want {
			t.Errorf("appendSentAt(%v) = %s, want %s", at, got, want)
		}
	}
}

// TestResultAppendJSON checks the hand-written encoding of a push's result
// against json.Marshal, including IDs it must not write as is.
func TestResultAppendJSON(t *testing.T) {
	for _, r := range []Result{
		{ID: "m_Z2tq0Mx7Sx2Pjm8kq5xWr3Vb", Delivered: 1},
		{ID: "m_x", Delivered: 12345, Stored: 2, Rejected: 7, Duplicate: true},
		{},
		{ID: `a"b\c`, Delivered: -1},
		{ID: "<script>&", Stored: 1},
		{ID: "é\u2028", Rejected: 1 << 40},
	} {
		want, _ := json.Marshal(resultJSON(r))
		if got := r.AppendJSON([]byte("x")); string(got) != "x"+string(want) {
			t.Errorf("AppendJSON(%+v) = %s, json.Marshal %s", r, got[1:], want)
		}
	}
}

// AnswerPieces joins to AppendAnswer's bytes and shares the rendered
// messages instead of copying them.
func TestAnswerPieces(t *testing.T) {
	now := time.Now()
	var msgs []poll.Message
	for i := range 5 {
		e := poll.NewEnvelope("t", "", json.RawMessage(`{"n":`+strconv.Itoa(i)+`}`), now, time.Hour)
		if i != 2 { // one without a rendered form: rendered in place
			e.Rendered, _ = Render(e)
		}
		msgs = append(msgs, poll.Message{Seq: uint64(10 + i), Envelope: e})
	}
	for n := 1; n <= len(msgs); n++ {
		pieces := AnswerPieces(msgs[:n])
		if got, want := bytes.Join(pieces, nil), AppendAnswer(nil, msgs[:n]); !bytes.Equal(got, want) {
			t.Fatalf("%d messages: pieces join to\n%s\nwant\n%s", n, got, want)
		}
		shared := 0
		for _, p := range pieces {
			for _, m := range msgs[:n] {
				if m.Rendered != nil && len(p) > 0 && &p[0] == &m.Rendered[0] {
					shared++
				}
			}
		}
		if want := n - boolInt(n > 2); shared != want {
			t.Fatalf("%d messages: %d rendered forms shared, want %d", n, shared, want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
