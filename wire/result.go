package wire

import (
	"encoding/json"
	"strconv"

	"github.com/longpoll/longpoll/poll"
)

// Result is a push's 202 body: {"id","delivered","stored","rejected"} and
// "duplicate": true for a repeated idempotency id.
type Result poll.Result

// resultJSON is Result's JSON form, for json.Marshal.
type resultJSON struct {
	ID        string `json:"id"`
	Delivered int    `json:"delivered"`
	Stored    int    `json:"stored"`
	Rejected  int    `json:"rejected"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// MarshalJSON implements json.Marshaler (echo's c.JSON, ?pretty).
func (r Result) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends r as json.Marshal writes resultJSON, without
// reflection when the ID needs no escaping (a message ID never does).
func (r Result) AppendJSON(dst []byte) []byte {
	if !plainString(r.ID) {
		b, _ := json.Marshal(resultJSON(r)) // cannot fail: strings and integers
		return append(dst, b...)
	}
	dst = append(dst, `{"id":"`...)
	dst = append(dst, r.ID...)
	dst = append(dst, `","delivered":`...)
	dst = strconv.AppendInt(dst, int64(r.Delivered), 10)
	dst = append(dst, `,"stored":`...)
	dst = strconv.AppendInt(dst, int64(r.Stored), 10)
	dst = append(dst, `,"rejected":`...)
	dst = strconv.AppendInt(dst, int64(r.Rejected), 10)
	if r.Duplicate {
		dst = append(dst, `,"duplicate":true`...)
	}
	return append(dst, '}')
}

// BatchResults is a batch's 202 body: per item, in order, its Result or
// (Err set) the error that refused it while the batch was applied,
// {"error":{…}}.
type BatchResults []BatchItem

// BatchItem is one item of BatchResults.
type BatchItem struct {
	Result Result
	Err    *Error // nil: the item was applied
}

// MarshalJSON implements json.Marshaler (echo's c.JSON, ?pretty).
func (b BatchResults) MarshalJSON() ([]byte, error) { return b.AppendJSON(nil), nil }

// AppendJSON appends the array as json.Marshal writes a []any of Results
// and error bodies, results written without reflection.
func (b BatchResults) AppendJSON(dst []byte) []byte {
	dst = append(dst, '[')
	for i, it := range b {
		if i > 0 {
			dst = append(dst, ',')
		}
		if it.Err != nil {
			dst = it.Err.AppendJSON(dst)
			continue
		}
		dst = it.Result.AppendJSON(dst)
	}
	return append(dst, ']')
}
