package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// The scanners must decode exactly what encoding/json decodes, or hand the
// input to it: for every input, the result and whether it is an error must
// match json.Unmarshal's.
func TestScannersMatchEncodingJSON(t *testing.T) {
	payloads := []string{
		`{"r":"run1","k":3,"p":0,"s":17,"t":1763798400123456789}`,
		`{"t":-5,"s":4294967295,"p":2,"k":-1,"r":"x"}`,
		` { "r" : "a" , "k" : 1 } `, `{}`, `{"r":"a\"b","k":1}`, `{"r":"é"}`, `{"k":1.5}`, `{"k":1e3}`,
		`{"s":4294967296}`, `{"s":-1}`, `{"k":01}`, `{"k":-}`, `{"x":{"y":[1,"]"]},"k":2}`, `{"k":2,}`,
		`{"k":2}x`, `{"k":2`, `[1]`, `null`, `{"r":null}`, `{"k":123456789012345678901}`, `{"r":"a","r":"b"}`,
		`{"R":"x","K":3}`, `{"s":-0}`, `{"x":nope,"k":1}`, "{\"x\":\"a\tb\",\"k\":1}",
	}
	for _, p := range payloads {
		got, gerr := decodePayload([]byte(p), "run1")
		var want payload
		werr := json.Unmarshal([]byte(p), &want)
		if (gerr != nil) != (werr != nil) || gerr == nil && got != want {
			t.Errorf("payload %s: got %+v (%v), encoding/json %+v (%v)", p, got, gerr, want, werr)
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	polls := []string{
		`{"cursor":0,"messages":[]}`, `{"cursor":2,"messages":[{"seq":2,"id":"m_x","topic":"","data":{"a":[1,{"b":"}"}]},"sentAt":"t"}]}`,
		`{"messages":[{"seq":1,"data":"s\"x"}],"cursor":1}`, `{"cursor":1,"messages":[{"seq":1,"data":1}]`, `{"cursor":-1}`,
		`{"cursor":1,"messages":[{"seq":1,"data":}]}`, `{"cursor":1,"messages":{}}`, `{"cursor":1,"messages":[{"seq":1,"redelivery":true,"data":null}]}`,
		`{"cursor":1,"messages":[{"seq":1,"id":nope,"data":1}]}`, `{"Cursor":3}`, `{"cursor":-0}`, `{"cursor":1,"messages":[{"seq":-0,"data":1}]}`,
		`{"cursor":2,"messages":[{"seq":1,"data":1}],"messages":[{"seq":2,"data":2}]}`, `{"cursor":1,"messages":[{"Seq":1,"data":1}]}`,
	}
	for range 200 {
		polls = append(polls, randomPoll(rng))
	}
	for _, p := range polls {
		got, gerr := decodeLPPoll([]byte(p))
		var want lpPollResp
		werr := json.Unmarshal([]byte(p), &want)
		if (gerr != nil) != (werr != nil) || gerr == nil && !samePoll(got, want) {
			t.Errorf("poll %s: got %+v (%v), encoding/json %+v (%v)", p, got, gerr, want, werr)
		}
	}

	results := []string{
		`{"id":"m_1","delivered":1,"stored":0,"rejected":0}` + "\n", `{"error":null,"delivered":1}`,
		`{"error":{"code":"mailbox_full","message":"full"},"delivered":0}`, `{"delivered":"1"}`, `{"delivered":1`,
		`{"delivered":1,"id":oops}`, `{"Delivered":1}`, `{"error":{"code":"a"},"error":{"message":"b"}}`,
	}
	for _, r := range results {
		got, gerr := decodeLPPushResult([]byte(r))
		var want lpPushResult
		werr := json.Unmarshal([]byte(r), &want)
		if (gerr != nil) != (werr != nil) || gerr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("push result %s: got %+v (%v), encoding/json %+v (%v)", r, got, gerr, want, werr)
		}
	}
	batches := []string{`[]`, "[" + strings.Join(results[:3], ",") + "]", `[{"delivered":1},]`, `[{"delivered":1}`}
	for _, b := range batches {
		got, gerr := decodeLPPushResults([]byte(b))
		var want []lpPushResult
		werr := json.Unmarshal([]byte(b), &want)
		if (gerr != nil) != (werr != nil) || gerr == nil && len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Errorf("push results %s: got %+v (%v), encoding/json %+v (%v)", b, got, gerr, want, werr)
		}
	}

	glps := []string{
		`{"events":[{"timestamp":1763798400123,"category":"c1","data":{"r":"x"},"id":"6f1c"}]}`,
		`{"timeout":"no events before timeout","timestamp":1763798400123}`, `{"error":"bad"}`, `{"events":[]}`,
		`{"events":[{"timestamp":1.5,"data":1}]}`, `{"events":[{"id":"a\u0062","data":1}]}`,
		`{"events":[{"data":1}],"events":[{"data":2}]}`, `{"Events":[{"data":1}]}`, `{"events":[{"id":"x","data":1,"category":nope}]}`,
	}
	for _, g := range glps {
		got, gerr := decodeGLPPoll([]byte(g))
		var want glpPollResp
		werr := json.Unmarshal([]byte(g), &want)
		if (gerr != nil) != (werr != nil) || gerr == nil && !reflect.DeepEqual(norm(got), norm(want)) {
			t.Errorf("golongpoll poll %s: got %+v (%v), encoding/json %+v (%v)", g, got, gerr, want, werr)
		}
	}
}

// The request bodies decode to what json.Marshal of the old structs gave.
func TestPushBodiesMatchEncodingJSON(t *testing.T) {
	data := mustJSON(payload{R: "run", K: 1, P: 2, S: 3, T: 4})
	for _, id := range []string{"1YTK32G0XSmDLzwFkajRBt83", `we"ird\id`, "é"} {
		want, _ := json.Marshal(lpPushItem{To: map[string]string{"sessionId": id}, Data: data})
		if got := lpPushBody(nil, id, data); !sameJSON(got, want) {
			t.Errorf("longpoll push: %s, want %s", got, want)
		}
		want, _ = json.Marshal(glpPublish{Category: id, Data: data})
		if got := glpPushBody(nil, id, data); !sameJSON(got, want) {
			t.Errorf("golongpoll push: %s, want %s", got, want)
		}
	}
	want, _ := json.Marshal([]glpPublish{{"a", data}, {"b", data}})
	if got := batchBody(2, func(b []byte, i int) []byte { return glpPushBody(b, string(rune('a'+i)), data) }); !sameJSON(got, want) {
		t.Errorf("batch: %s, want %s", got, want)
	}
}

func randomPoll(rng *rand.Rand) string {
	var b strings.Builder
	n := rng.IntN(4)
	fmt.Fprintf(&b, `{"cursor":%d,"messages":[`, rng.IntN(1000))
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		data := []string{`1`, `"x"`, `{"r":"a","k":1}`, `[{"a":"]}"},null,true]`, `"\u00e9\"}"`}[rng.IntN(5)]
		fmt.Fprintf(&b, `{"seq":%d,"id":"m_%d","topic":"t","data":%s,"sentAt":"2026"}`, rng.IntN(1000), i, data)
	}
	b.WriteString("]}")
	return b.String()
}

func samePoll(a, b lpPollResp) bool {
	if a.Cursor != b.Cursor || len(a.Messages) != len(b.Messages) {
		return false
	}
	for i := range a.Messages {
		if a.Messages[i].Seq != b.Messages[i].Seq || string(a.Messages[i].Data) != string(b.Messages[i].Data) {
			return false
		}
	}
	return true
}

func norm(r glpPollResp) glpPollResp {
	if len(r.Events) == 0 {
		r.Events = nil
	}
	return r
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func TestPayloadJSONMatchesEncodingJSON(t *testing.T) {
	for _, m := range []payload{{R: "run-1", K: -1, P: 31, S: 4294967295, T: -9}, {R: `q"é`}, {}} {
		if got, want := payloadJSON(m), mustJSON(m); string(got) != string(want) {
			t.Errorf("payloadJSON(%+v) = %s, want %s", m, got, want)
		}
	}
}
