package wire_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// FuzzParsePushes feeds push bodies (single objects and batches, from a
// publisher or a client) to ParsePushes, then delivers what it accepts to a
// hub with one session and polls it. ParsePushes must refuse with a
// sentinel or return pushes within the limits; the hub must deliver them in
// order, and the poll response must be valid JSON carrying each message's
// data unchanged.
func FuzzParsePushes(f *testing.F) {
	for _, s := range []string{
		`{"to":{"userId":"u"},"topic":"alerts","data":{"text":"door open"},"ttl":172800,"id":"k1"}`,
		`{"to":{"sessionId":"s"},"data":1}`, `{"to":{"deviceId":"d"},"data":"x"}`, `{"to":{"topic":"t"},"data":[1,2]}`,
		`{"data":null}`, `{}`, `{"to":{}}`, `{"to":null}`, `{"to":{"userId":"u","deviceId":"d"}}`,
		`[{"to":{"userId":"u"},"data":1},{"to":{"topic":"t"},"data":2},{"data":3,"id":"k1"},{"data":4,"id":"k1"}]`,
		`[]`, `[1]`, `[{"data":1}]]`, `{"data":1}}`, `{"to":{"topic":"$presence"},"data":{}}`, `{"topic":"$heartbeat","data":0}`,
		`{"data":"\u00e9\ud83d\ude00\u2028<>&"}`, `{"data":1e400}`, `{"data":-0.0e-5}`, `{"ttl":0}`, `{"ttl":2592001}`, `{"id":""}`,
		`{"data":{"a":{"b":[null,true,false,"x"]}}, "topic":"a/b:c@d.e-f_g"}`, " \n[ {\"data\" : 1 } ]\t",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, client bool) {
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("stuck on %q client=%v", body, client)) })
		defer watchdog.Stop()
		origin := wire.Publisher
		if client {
			origin = wire.Client
		}
		pushes, batch, err := wire.ParsePushes(body, origin)
		if err != nil {
			if !errors.Is(err, session.ErrInvalidPayload) && !errors.Is(err, poll.ErrPayloadTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if pushes != nil {
				t.Fatalf("pushes %v with error %v", pushes, err)
			}
			return
		}
		if len(pushes) > poll.MaxBatchSize || !batch && len(pushes) != 1 { // an empty batch is valid
			t.Fatalf("%d pushes (batch %v)", len(pushes), batch)
		}
		var topics []string
		for _, p := range pushes {
			checkPush(t, p, origin)
			if t := p.To.Topic; t != "" && !strings.HasPrefix(t, "$") && !slices.Contains(topics, t) && len(topics) < session.MaxTopics {
				topics = append(topics, t)
			}
		}

		// Deliver to a hub whose one session every user, device, topic
		// (up to 64) and broadcast push reaches.
		h := poll.NewHub(poll.Config{MaxMailbox: 2 * poll.MaxBatchSize, Render: wire.Render})
		defer h.Close()
		s, err := h.Connect(session.Request{DeviceID: "d", UserID: "u", Topics: topics})
		if err != nil {
			t.Fatal(err)
		}
		type want struct {
			topic, from string
			data        json.RawMessage
		}
		var wants []want
		for _, p := range pushes {
			var res poll.Result
			from := ""
			if client {
				res, err = h.Send(s.ID, p)
				from = s.From()
			} else {
				res, err = h.Publish(p)
			}
			if err != nil {
				// A send may not ask for a ttl beyond the offline ttl.
				if !errors.Is(err, poll.ErrSessionNotFound) && !(client && p.TTL > poll.DefaultOfflineTTL && errors.Is(err, session.ErrInvalidPayload)) {
					t.Fatalf("delivering %+v: %v", p, err)
				}
				continue
			}
			if res.Delivered+res.Stored > 1 || res.Rejected != 0 || !strings.HasPrefix(res.ID, "m_") {
				t.Fatalf("result %+v with one session", res)
			}
			if res.Delivered == 1 && !res.Duplicate {
				wants = append(wants, want{p.Topic, from, p.Data})
			}
		}

		// Poll everything out, acknowledging as we go.
		var cursor uint64
		var got []poll.Message
		for {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // answer at once
			msgs, err := h.Poll(ctx, s.ID, cursor, cursor > 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			checkBatchJSON(t, msgs)
			got = append(got, msgs...)
			cursor = msgs[len(msgs)-1].Seq
		}
		if len(got) != len(wants) {
			t.Fatalf("polled %d messages, delivered %d", len(got), len(wants))
		}
		for i, m := range got {
			w := wants[i]
			if m.Seq != uint64(i+1) || m.Topic != w.topic || m.From != w.from || !sameJSON(m.Data, w.data) {
				t.Fatalf("message %d: seq %d topic %q from %q data %s; want topic %q from %q data %s", i, m.Seq, m.Topic, m.From, m.Data, w.topic, w.from, w.data)
			}
		}
	})
}

// checkPush asserts the invariants of an accepted push.
func checkPush(t *testing.T, p poll.Push, origin wire.Origin) {
	t.Helper()
	n := 0
	for _, f := range []string{p.To.SessionID, p.To.DeviceID, p.To.UserID, p.To.Topic} {
		if f != "" {
			n++
		}
	}
	switch {
	case n > 1:
		t.Fatalf("target %+v names more than one", p.To)
	case p.To.DeviceID != "" && !session.ValidID(p.To.DeviceID), p.To.UserID != "" && !session.ValidID(p.To.UserID),
		p.To.Topic != "" && !session.ValidTopic(p.To.Topic), len(p.To.SessionID) > 256:
		t.Fatalf("invalid target %+v", p.To)
	case p.Topic != "" && !session.ValidTopic(p.Topic):
		t.Fatalf("invalid topic %q", p.Topic)
	case len(p.Data) > poll.MaxDataBytes || len(p.Data) > 0 && !json.Valid(p.Data):
		t.Fatalf("data %q", p.Data)
	case p.TTL < 0 || p.TTL > poll.MaxTTL || p.TTL%time.Second != 0:
		t.Fatalf("ttl %v", p.TTL)
	case p.Key != "" && !session.ValidID(p.Key):
		t.Fatalf("id %q", p.Key)
	}
	if origin == wire.Client {
		if k := p.To.Kind(); k == poll.Broadcast || k == poll.ToSession {
			t.Fatalf("client push with target kind %v", k)
		}
		if strings.HasPrefix(p.Topic, "$") || strings.HasPrefix(p.To.Topic, "$") {
			t.Fatalf("client push to system topic %+v", p)
		}
	}
}

// checkBatchJSON asserts that the encoded poll response is valid JSON of
// the documented shape.
func checkBatchJSON(t *testing.T, msgs []poll.Message) {
	t.Helper()
	b := wire.AppendAnswer(nil, msgs)
	var out struct {
		Cursor   uint64 `json:"cursor"`
		Messages []struct {
			Seq    uint64          `json:"seq"`
			ID     string          `json:"id"`
			Topic  *string         `json:"topic"`
			From   string          `json:"from"`
			Data   json.RawMessage `json:"data"`
			SentAt string          `json:"sentAt"`
		} `json:"messages"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || dec.More() {
		t.Fatalf("poll response %s: %v", b, err)
	}
	if len(out.Messages) != len(msgs) || out.Cursor != msgs[len(msgs)-1].Seq {
		t.Fatalf("poll response %s for %d messages", b, len(msgs))
	}
	for i, m := range out.Messages {
		if m.Seq != msgs[i].Seq || m.ID != msgs[i].ID || m.Topic == nil || *m.Topic != msgs[i].Topic || m.From != msgs[i].From ||
			!sameJSON(m.Data, msgs[i].Data) || m.SentAt == "" {
			t.Fatalf("message %d encoded as %+v from %+v", i, m, msgs[i])
		}
	}
}

// sameJSON reports whether a and b are the same JSON value (absent data
// is null). The encoder may escape differently (<, >, &, U+2028) and
// numbers keep their text.
func sameJSON(a, b json.RawMessage) bool {
	decode := func(r json.RawMessage) (any, bool) {
		if len(r) == 0 {
			r = json.RawMessage("null")
		}
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.UseNumber()
		var v any
		return v, dec.Decode(&v) == nil
	}
	va, oka := decode(a)
	vb, okb := decode(b)
	return oka && okb && reflect.DeepEqual(va, vb)
}
