package wire

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestBatchResultsJSON checks a batch's 202 body, written without
// reflection, against json.Marshal of the results and error objects it
// stands for, through AppendJSON (a taken-over connection) and
// MarshalJSON (echo).
func TestBatchResultsJSON(t *testing.T) {
	full := &Error{Status: http.StatusTooManyRequests, Code: "mailbox_full", Message: "the mailbox <of> \"s1\" is full"}
	type errorBody struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	var fullBody errorBody
	fullBody.Error.Code, fullBody.Error.Message = full.Code, full.Message
	b := make(BatchResults, 4)
	b[0].Result = Result{ID: "m_1", Delivered: 1}
	b[1].Err = full
	b[2].Result = Result{ID: "m_2", Stored: 3, Duplicate: true}
	b[3].Result = Result{ID: "odd\"id", Rejected: 2}
	want, _ := json.Marshal([]any{resultJSON(b[0].Result), fullBody, resultJSON(b[2].Result), resultJSON(b[3].Result)})
	if got := b.AppendJSON(nil); string(got) != string(want) {
		t.Errorf("AppendJSON = %s\nwant         %s", got, want)
	}
	if got, err := json.Marshal(b); err != nil || string(got) != string(want) {
		t.Errorf("json.Marshal = %s, %v\nwant           %s", got, err, want)
	}
	if got := (BatchResults{}).AppendJSON(nil); string(got) != "[]" {
		t.Errorf("empty batch: %q", got)
	}
	if got, err := json.Marshal(full); err != nil || string(got) != `{"error":{"code":"mailbox_full","message":"the mailbox \u003cof\u003e \"s1\" is full"}}` {
		t.Errorf("error body %s, %v", got, err)
	}
}
