package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/longpoll/longpoll/poll"
)

// TestBatchResultsJSON checks a batch's 202 body, written without
// reflection, against json.Marshal of the results and error objects it
// replaces, on the owned path (jsonLine) and through MarshalJSON (echo).
func TestBatchResultsJSON(t *testing.T) {
	full := &Error{Status: http.StatusTooManyRequests, Code: "mailbox_full", Message: "the mailbox <of> \"s1\" is full"}
	b := make(batchResults, 4)
	b[0].res = poll.Result{ID: "m_1", Delivered: 1}
	b[1].err = full
	b[2].res = poll.Result{ID: "m_2", Stored: 3, Duplicate: true}
	b[3].res = poll.Result{ID: "odd\"id", Rejected: 2}
	want, _ := json.Marshal([]any{b[0].res, batchError{full}, b[2].res, b[3].res})
	if got := jsonLine(b); string(got) != string(want)+"\n" {
		t.Errorf("jsonLine = %s\nwant       %s", got, want)
	}
	if got, err := json.Marshal(b); err != nil || string(got) != string(want) {
		t.Errorf("json.Marshal = %s, %v\nwant           %s", got, err, want)
	}
	if got := jsonLine(batchResults{}); string(got) != "[]\n" {
		t.Errorf("empty batch: %q", got)
	}
	r := poll.Result{ID: "m_3", Delivered: 2}
	wantOne, _ := json.Marshal(r)
	if got := jsonLine(r); string(got) != string(wantOne)+"\n" {
		t.Errorf("jsonLine(Result) = %s, want %s", got, wantOne)
	}
}
