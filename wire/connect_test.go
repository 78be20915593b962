package wire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// knownBug skips a test that demonstrates a reported bug, so the suite stays
// green until it is fixed. LONGPOLL_SHOW_BUGS=1 runs it (and shows it fail).
func knownBug(t *testing.T, desc string) {
	t.Helper()
	if os.Getenv("LONGPOLL_SHOW_BUGS") == "" {
		t.Skip("BUG: " + desc)
	}
}

// topicList returns n distinct valid topic names.
func topicList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("t%d", i)
	}
	return out
}

func jsonBody(v map[string]any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// metaOfSize returns a JSON object of exactly n bytes (n >= 8).
func metaOfSize(n int) string {
	return `{"k":"` + strings.Repeat("x", n-8) + `"}`
}

func TestParseConnectJSON(t *testing.T) {
	id128 := strings.Repeat("a", session.MaxIDLen)
	topic200 := strings.Repeat("t", session.MaxTopicLen)
	tests := []struct {
		name    string
		body    string
		want    session.Request // checked when wantErr is empty
		wantErr string          // substring of the error; "" means valid
		bug     string          // known bug: skip unless LONGPOLL_SHOW_BUGS
	}{
		// deviceId
		{name: "minimal", body: `{"deviceId":"lamp-42"}`, want: session.Request{DeviceID: "lamp-42", Topics: []string{}}},
		{name: "full", body: `{"deviceId":"lamp-42","userId":"alice","topics":["home/kitchen"],"meta":{"fw":"1.2"}}`,
			want: session.Request{DeviceID: "lamp-42", UserID: "alice", Topics: []string{"home/kitchen"}, Meta: json.RawMessage(`{"fw":"1.2"}`)}},
		{name: "deviceId every allowed char", body: `{"deviceId":"azAZ09._:@-"}`, want: session.Request{DeviceID: "azAZ09._:@-", Topics: []string{}}},
		{name: "deviceId one char", body: `{"deviceId":"x"}`, want: session.Request{DeviceID: "x", Topics: []string{}}},
		{name: "deviceId 128 chars", body: `{"deviceId":"` + id128 + `"}`, want: session.Request{DeviceID: id128, Topics: []string{}}},
		{name: "deviceId 129 chars", body: `{"deviceId":"` + id128 + `a"}`, wantErr: "deviceId"},
		{name: "deviceId missing", body: `{"userId":"alice"}`, wantErr: "deviceId is required"},
		{name: "deviceId empty", body: `{"deviceId":""}`, wantErr: "deviceId is required"},
		{name: "deviceId null", body: `{"deviceId":null}`, wantErr: "deviceId is required"},
		{name: "deviceId slash", body: `{"deviceId":"a/b"}`, wantErr: "deviceId"},
		{name: "deviceId space", body: `{"deviceId":"a b"}`, wantErr: "deviceId"},
		{name: "deviceId non-ASCII", body: `{"deviceId":"lämp"}`, wantErr: "deviceId"},
		{name: "deviceId dollar", body: `{"deviceId":"$x"}`, wantErr: "deviceId"},
		{name: "deviceId number", body: `{"deviceId":42}`, wantErr: "deviceId"},
		// userId
		{name: "userId empty is absent", body: `{"deviceId":"d","userId":""}`, want: session.Request{DeviceID: "d", Topics: []string{}}},
		{name: "userId 128 chars", body: `{"deviceId":"d","userId":"` + id128 + `"}`, want: session.Request{DeviceID: "d", UserID: id128, Topics: []string{}}},
		{name: "userId 129 chars", body: `{"deviceId":"d","userId":"` + id128 + `b"}`, wantErr: "userId"},
		{name: "userId bad char", body: `{"deviceId":"d","userId":"al ice"}`, wantErr: "userId"},
		{name: "userId slash", body: `{"deviceId":"d","userId":"a/b"}`, wantErr: "userId"},
		{name: "userId object", body: `{"deviceId":"d","userId":{}}`, wantErr: "userId"},
		// topics
		{name: "topics null", body: `{"deviceId":"d","topics":null}`, want: session.Request{DeviceID: "d", Topics: []string{}}},
		{name: "topics every allowed char", body: `{"deviceId":"d","topics":["azAZ09._:/@-"]}`, want: session.Request{DeviceID: "d", Topics: []string{"azAZ09._:/@-"}}},
		{name: "topic 200 chars", body: `{"deviceId":"d","topics":["` + topic200 + `"]}`, want: session.Request{DeviceID: "d", Topics: []string{topic200}}},
		{name: "topic 201 chars", body: `{"deviceId":"d","topics":["` + topic200 + `t"]}`, wantErr: "topics[0]"},
		{name: "topic empty", body: `{"deviceId":"d","topics":["a",""]}`, wantErr: "topics[1]"},
		{name: "topic space", body: `{"deviceId":"d","topics":["a b"]}`, wantErr: "topics[0]"},
		{name: "topic comma", body: `{"deviceId":"d","topics":["a,b"]}`, wantErr: "topics[0]"},
		{name: "64 topics", body: jsonBody(map[string]any{"deviceId": "d", "topics": topicList(64)}), want: session.Request{DeviceID: "d", Topics: topicList(64)}},
		{name: "65 topics", body: jsonBody(map[string]any{"deviceId": "d", "topics": topicList(65)}), wantErr: "at most 64 topics"},
		{name: "topics deduplicated in order", body: `{"deviceId":"d","topics":["b","a","b","c","a"]}`, want: session.Request{DeviceID: "d", Topics: []string{"b", "a", "c"}}},
		{name: "$presence allowed", body: `{"deviceId":"d","topics":["$presence"]}`, want: session.Request{DeviceID: "d", Topics: []string{"$presence"}}},
		{name: "$heartbeat allowed", body: `{"deviceId":"d","topics":["$heartbeat","x"]}`, want: session.Request{DeviceID: "d", Topics: []string{"$heartbeat", "x"}}},
		{name: "other $ topic refused", body: `{"deviceId":"d","topics":["$system"]}`, wantErr: "unknown system topic"},
		{name: "$ alone refused", body: `{"deviceId":"d","topics":["$"]}`, wantErr: "topics[0]"},
		{name: "$$presence refused", body: `{"deviceId":"d","topics":["$$presence"]}`, wantErr: "topics[0]"},
		{name: "$ inside topic refused", body: `{"deviceId":"d","topics":["a$b"]}`, wantErr: "topics[0]"},
		{name: "$presence with suffix refused", body: `{"deviceId":"d","topics":["$presence/x"]}`, wantErr: "unknown system topic"},
		{name: "topics a string", body: `{"deviceId":"d","topics":"a"}`, wantErr: "topics"},
		{name: "topics of numbers", body: `{"deviceId":"d","topics":[1]}`, wantErr: "topics"},
		// meta
		{name: "meta compacted", body: `{"deviceId":"d","meta":{ "a" : [1, 2] }}`, want: session.Request{DeviceID: "d", Topics: []string{}, Meta: json.RawMessage(`{"a":[1,2]}`)}},
		{name: "meta empty object", body: `{"deviceId":"d","meta":{}}`, want: session.Request{DeviceID: "d", Topics: []string{}, Meta: json.RawMessage(`{}`)}},
		{name: "meta null is absent", body: `{"deviceId":"d","meta":null}`, want: session.Request{DeviceID: "d", Topics: []string{}}},
		{name: "meta exactly 4 KiB", body: `{"deviceId":"d","meta":` + metaOfSize(session.MaxMetaBytes) + `}`,
			want: session.Request{DeviceID: "d", Topics: []string{}, Meta: json.RawMessage(metaOfSize(session.MaxMetaBytes))}},
		{name: "meta 4 KiB + 1", body: `{"deviceId":"d","meta":` + metaOfSize(session.MaxMetaBytes+1) + `}`, wantErr: "meta is larger"},
		{name: "meta array", body: `{"deviceId":"d","meta":[1]}`, wantErr: "meta must be a JSON object"},
		{name: "meta string", body: `{"deviceId":"d","meta":"x"}`, wantErr: "meta must be a JSON object"},
		{name: "meta number", body: `{"deviceId":"d","meta":1}`, wantErr: "meta must be a JSON object"},
		{name: "meta bool", body: `{"deviceId":"d","meta":true}`, wantErr: "meta must be a JSON object"},
		// framing
		{name: "empty body", body: ``, wantErr: "empty body"},
		{name: "whitespace body", body: " \n", wantErr: "empty body"},
		{name: "null body", body: `null`, wantErr: "deviceId is required"},
		{name: "array body", body: `[{"deviceId":"d"}]`, wantErr: "invalid payload"},
		{name: "string body", body: `"d"`, wantErr: "invalid payload"},
		{name: "not JSON", body: `deviceId=d`, wantErr: "invalid payload"},
		{name: "truncated", body: `{"deviceId":"d"`, wantErr: "invalid payload"},
		{name: "unknown field", body: `{"deviceId":"d","color":"red"}`, wantErr: "color"},
		{name: "trailing object", body: `{"deviceId":"d"} {"deviceId":"e"}`, wantErr: "trailing data"},
		{name: "trailing garbage", body: `{"deviceId":"d"} x`, wantErr: "trailing data"},
		{name: "trailing brace", body: `{"deviceId":"d"}}`, wantErr: "trailing data"},
		{name: "trailing bracket", body: `{"deviceId":"d"}]`, wantErr: "trailing data"},
		{name: "trailing whitespace is fine", body: "{\"deviceId\":\"d\"}\n", want: session.Request{DeviceID: "d", Topics: []string{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.ParseConnectJSON([]byte(tc.body))
			checkParse(t, tc.bug, got, err, tc.want, tc.wantErr)
		})
	}
}

func checkParse(t *testing.T, bug string, got session.Request, err error, want session.Request, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			if bug != "" {
				knownBug(t, bug)
			}
			t.Fatalf("got %+v, want an error containing %q", got, wantErr)
		}
		if !errors.Is(err, session.ErrInvalidPayload) {
			t.Errorf("error %v does not wrap ErrInvalidPayload", err)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Errorf("error %q does not contain %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestParseConnectForm(t *testing.T) {
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	id128 := strings.Repeat("a", session.MaxIDLen)
	tests := []struct {
		name    string
		body    string
		want    session.Request
		wantErr string
	}{
		{name: "minimal", body: form("deviceId", "lamp-42"), want: session.Request{DeviceID: "lamp-42", Topics: []string{}}},
		{name: "full", body: form("deviceId", "lamp-42", "userId", "alice", "topics", "home/kitchen", "meta", `{"fw": "1.2"}`),
			want: session.Request{DeviceID: "lamp-42", UserID: "alice", Topics: []string{"home/kitchen"}, Meta: json.RawMessage(`{"fw":"1.2"}`)}},
		{name: "topics repeated", body: form("deviceId", "d", "topics", "a", "topics", "b"), want: session.Request{DeviceID: "d", Topics: []string{"a", "b"}}},
		{name: "topics comma-separated", body: form("deviceId", "d", "topics", "a,b,c"), want: session.Request{DeviceID: "d", Topics: []string{"a", "b", "c"}}},
		{name: "topics repeated and comma-separated", body: form("deviceId", "d", "topics", "a,b", "topics", "c"), want: session.Request{DeviceID: "d", Topics: []string{"a", "b", "c"}}},
		{name: "topics with spaces and empty parts", body: form("deviceId", "d", "topics", " a , ,b,", "topics", ""), want: session.Request{DeviceID: "d", Topics: []string{"a", "b"}}},
		{name: "topics deduplicated", body: form("deviceId", "d", "topics", "a,b,a", "topics", "b", "topics", "c"), want: session.Request{DeviceID: "d", Topics: []string{"a", "b", "c"}}},
		{name: "system topics", body: form("deviceId", "d", "topics", "$presence,$heartbeat"), want: session.Request{DeviceID: "d", Topics: []string{"$presence", "$heartbeat"}}},
		{name: "raw body, unsorted", body: "topics=x%2Fy&deviceId=d&topics=z", want: session.Request{DeviceID: "d", Topics: []string{"x/y", "z"}}},
		{name: "64 topics comma-separated", body: form("deviceId", "d", "topics", strings.Join(topicList(64), ",")), want: session.Request{DeviceID: "d", Topics: topicList(64)}},
		{name: "65 topics comma-separated", body: form("deviceId", "d", "topics", strings.Join(topicList(65), ",")), wantErr: "at most 64 topics"},
		{name: "65 topics repeated", body: form(append([]string{"deviceId", "d"}, interleave("topics", topicList(65))...)...), wantErr: "at most 64 topics"},
		{name: "other $ topic", body: form("deviceId", "d", "topics", "a,$admin"), wantErr: "unknown system topic"},
		{name: "bad topic char", body: form("deviceId", "d", "topics", "a;b"), wantErr: "topics[0]"},
		{name: "deviceId missing", body: form("userId", "alice"), wantErr: "deviceId is required"},
		{name: "deviceId empty", body: form("deviceId", ""), wantErr: "deviceId is required"},
		{name: "deviceId 128", body: form("deviceId", id128), want: session.Request{DeviceID: id128, Topics: []string{}}},
		{name: "deviceId 129", body: form("deviceId", id128+"a"), wantErr: "deviceId"},
		{name: "deviceId bad char", body: form("deviceId", "a/b"), wantErr: "deviceId"},
		{name: "userId bad char", body: form("deviceId", "d", "userId", "a b"), wantErr: "userId"},
		{name: "meta empty is absent", body: form("deviceId", "d", "meta", ""), want: session.Request{DeviceID: "d", Topics: []string{}}},
		{name: "meta not JSON", body: form("deviceId", "d", "meta", "{bad"), wantErr: "meta must be a JSON object"},
		{name: "meta array", body: form("deviceId", "d", "meta", "[1]"), wantErr: "meta must be a JSON object"},
		{name: "meta too large", body: form("deviceId", "d", "meta", metaOfSize(session.MaxMetaBytes+1)), wantErr: "meta is larger"},
		{name: "unknown field", body: form("deviceId", "d", "color", "red"), wantErr: "color"},
		{name: "empty body", body: "", wantErr: "deviceId is required"},
		{name: "malformed escape", body: "deviceId=%zz", wantErr: "malformed form body"},
		{name: "semicolon separator", body: "deviceId=d;userId=u", wantErr: "malformed form body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.ParseConnectForm([]byte(tc.body))
			checkParse(t, "", got, err, tc.want, tc.wantErr)
		})
	}
}

func interleave(key string, vals []string) []string {
	out := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		out = append(out, key, v)
	}
	return out
}
