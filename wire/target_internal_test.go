package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/longpoll/longpoll/internal/jsonscan"
	"github.com/longpoll/longpoll/poll"
)

// simpleTarget must read exactly what decodeTarget reads, or step aside.
func TestSimpleTarget(t *testing.T) {
	for _, c := range []struct {
		raw         string
		name, value string
		ok          bool
	}{
		{`{"sessionId":"abc"}`, "sessionId", "abc", true},
		{` { "userId" : "u-1" } `, "userId", "u-1", true},
		{"{\n\t\"topic\":\"a/b\"\r\n}", "topic", "a/b", true},
		{`{"deviceId":""}`, "deviceId", "", true},
		{`{"SessionId":"abc"}`, "", "", false},            // case-folded: the decoder's
		{`{"sessionId":"a\"b"}`, "", "", false},           // escapes
		{`{"sessionId":"a\u0062"}`, "", "", false},        // escapes
		{`{"sessionId":"é"}`, "", "", false},              // non-ASCII
		{`{"sessionId":1}`, "", "", false},                // not a string
		{`{"sessionId":"a","userId":"u"}`, "", "", false}, // two fields
		{`{"other":"a"}`, "", "", false},
		{`{}`, "", "", false},
		{`{"sessionId":"a"}x`, "", "", false},
		{`{"sessionId":"a"`, "", "", false},
	} {
		name, value, ok := simpleTarget([]byte(c.raw))
		if name != c.name || value != c.value || ok != c.ok {
			t.Errorf("simpleTarget(%q) = %q, %q, %v; want %q, %q, %v", c.raw, name, value, ok, c.name, c.value, c.ok)
		}
	}
}

// FuzzSimpleTarget checks that whatever simpleTarget accepts is valid JSON
// that decodeTarget reads the same way.
func FuzzSimpleTarget(f *testing.F) {
	for _, s := range []string{`{"sessionId":"abc"}`, ` { "topic" : "t" } `, `{"userId":"u","x":1}`, `{"deviceId":"\u0041"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		name, value, ok := simpleTarget(raw)
		if !ok {
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("simpleTarget accepted invalid JSON %q", raw)
		}
		var to poll.Target
		dname, err := decodeTarget(&to, raw)
		if err != nil || dname != name || *field(&to, name) != value {
			t.Fatalf("%q: simpleTarget %q=%q, decodeTarget %q=%q (%v)", raw, name, value, dname, *field(&to, name), err)
		}
	})
}

// FuzzScanPush checks that whatever scanPush and scanBatch accept, the
// decoder accepts and reads the same way.
func FuzzScanPush(f *testing.F) {
	for _, s := range []string{
		`{"to":{"sessionId":"abc"},"data":{"r":"x","k":1}}`, `{"topic":"t","data":[1,"]"],"ttl":60,"id":"k1"}`,
		` { "data" : null , "to" : { "userId" : "u" } } `, `{"data":1,"data":2}`, `{"Data":1}`, `{"ttl":-0}`, `{"ttl":1.5}`,
		`[{"data":1},{"to":{"topic":"a/b"},"data":"x"}]`, `[]`, `[{"data":1},]`, `{"data":{"a":1]}`, `{"id":"a\u0062"}`,
	} {
		f.Add([]byte(s))
	}
	decode := func(body []byte, v any) bool {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		return dec.Decode(v) == nil && atEOF(dec)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s := jsonscan.New(body)
		if w, ok := scanPush(s); ok && s.End() {
			var d wirePush
			if !decode(body, &d) || !sameWire(&w, &d) {
				t.Fatalf("%q: scanPush %+v, decoder %+v", body, w, d)
			}
		}
		if ws, ok := scanBatch(body); ok {
			var ds []*wirePush
			if !decode(body, &ds) || len(ds) != len(ws) {
				t.Fatalf("%q: scanBatch %d items, decoder %d", body, len(ws), len(ds))
			}
			for i := range ws {
				if ds[i] == nil || !sameWire(ws[i], ds[i]) {
					t.Fatalf("%q item %d: scanBatch %+v, decoder %+v", body, i, ws[i], ds[i])
				}
			}
		}
	})
}

func sameWire(a, b *wirePush) bool {
	eq := func(x, y *string) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return bytes.Equal(a.To, b.To) && bytes.Equal(a.Data, b.Data) && eq(a.Topic, b.Topic) && eq(a.ID, b.ID) &&
		(a.TTL == nil && b.TTL == nil || a.TTL != nil && b.TTL != nil && *a.TTL == *b.TTL)
}

// The usual pushes take the scanner's path.
func TestScanPushTakesTheUsualForms(t *testing.T) {
	for _, body := range []string{
		`{"to":{"sessionId":"abc"},"data":{"r":"x","k":1}}`,
		`{"to":{"userId":"u"},"topic":"alerts","data":{"text":"door open"},"ttl":172800,"id":"k1"}`,
		`{"data":[1,2,{"a":"]"}]}`,
	} {
		if _, ok := scanPush(jsonscan.New([]byte(body))); !ok {
			t.Errorf("scanPush refused %s", body)
		}
	}
	if ws, ok := scanBatch([]byte(`[{"data":1},{"to":{"topic":"t"},"data":2}]`)); !ok || len(ws) != 2 {
		t.Errorf("scanBatch: %d items, ok %v", len(ws), ok)
	}
	for _, body := range []string{`{"Data":1}`, `{"data":1,"data":2}`, `{"ttl":1.5}`, `{"to":{"sessionId":"a\u0062"}}`, `{"extra":1}`} {
		if _, ok := scanPush(jsonscan.New([]byte(body))); ok {
			t.Errorf("scanPush took %s", body)
		}
	}
}

// FuzzParsePushesScan checks that ParsePushes answers every body exactly as
// it did before the scanner: the same pushes, or the same error message,
// and the body left as it was.
func FuzzParsePushesScan(f *testing.F) {
	for _, s := range []string{
		`[{"to":{"userId":"a"},"ttl":"x","topic":"t","to":{"topic":"bbbbbbbbbbbb"}}]`,
		`[{"to":{"userId":"a"},"to":{"topic":"bbbbbbbbbbbbbbbbbbbbbbbbb"}},{"ttl":0}]`,
		`[{"to":{"sessionId":"s"},"data":1},{"data":2,"ttl":60,"id":"k"}]`, `{"to":{"sessionId":"s"},"data":{"a":[1]}}`,
		`{"data":1,"data":2}`, `[{"data":1},{"Data":2}]`, `[{"data":1}]x`, `{"ttl":1.5}`, `[]`, `[null]`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, client bool) {
		origin := Publisher
		if client {
			origin = Client
		}
		before := bytes.Clone(body)
		want, wantBatch, wantErr := parsePushes(bytes.Clone(body), origin, false)
		got, gotBatch, gotErr := parsePushes(body, origin, true)
		if !bytes.Equal(body, before) {
			t.Fatalf("%q: the body was changed to %q", before, body)
		}
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || gotBatch != wantBatch || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: scanning gives %+v %v (%v), decoding %+v %v (%v)", body, got, gotBatch, gotErr, want, wantBatch, wantErr)
		}
	})
}
