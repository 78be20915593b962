package bayeux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
)

// Meta channels of Bayeux 1.0.
const (
	Handshake   = "/meta/handshake"
	Connect     = "/meta/connect"
	Subscribe   = "/meta/subscribe"
	Unsubscribe = "/meta/unsubscribe"
	Disconnect  = "/meta/disconnect"
)

// Direct is the channel that carries a client's messages that no
// subscription of its names: pushes and sends to its session, device or
// user (unless their topic is one it subscribes to), and broadcasts.
// Every client receives it without subscribing (a subscription to it is
// accepted and changes nothing); nobody may publish to it.
const Direct = "/longpoll/direct"

// The connection types served: Bayeux's long-polling, and Faye's name
// for the same over cross-origin requests (its body a form field).
const (
	LongPolling            = "long-polling"
	CrossOriginLongPolling = "cross-origin-long-polling"
)

// connectionTypes is what a handshake reply advertises.
var connectionTypes = []string{LongPolling, CrossOriginLongPolling}

// MaxMessages caps the messages of one request, as a /push batch is
// capped.
const MaxMessages = poll.MaxBatchSize

// message is one Bayeux message as a client sends it. Fields that a
// client may send in more than one shape (id, subscription, ext) are kept
// raw and read where they are used.
type message struct {
	Channel                  string          `json:"channel"`
	ClientID                 string          `json:"clientId"`
	ID                       json.RawMessage `json:"id"`
	Data                     json.RawMessage `json:"data"`
	Subscription             json.RawMessage `json:"subscription"`
	ConnectionType           string          `json:"connectionType"`
	Version                  string          `json:"version"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes"`
	Advice                   *struct {
		Timeout *float64 `json:"timeout"`
	} `json:"advice"`
	Ext json.RawMessage `json:"ext"`
}

// ext is what this server reads of a message's ext: the handshake's token,
// device and user, and the acknowledgement extension's field (true on a
// handshake, a batch number on a connect).
type ext struct {
	Token    string          `json:"token"`
	DeviceID string          `json:"deviceId"`
	UserID   string          `json:"userId"`
	Ack      json.RawMessage `json:"ack"`
}

// Advice is the server's advice to a client (Bayeux 1.0, section 5.1.3):
// how to reconnect, after how many milliseconds, and how long a
// /meta/connect is held.
type Advice struct {
	Reconnect string `json:"reconnect,omitempty"`
	Interval  int64  `json:"interval"`
	Timeout   int64  `json:"timeout,omitempty"`
}

// Reconnect advice values.
const (
	Retry       = "retry"
	ReHandshake = "handshake"
	None        = "none"
)

// reply is a message the server sends: a meta channel's or a publish's
// reply, or an event delivered to a subscriber (channel, data, id, ext).
type reply struct {
	Channel                  string          `json:"channel"`
	Data                     json.RawMessage `json:"data,omitempty"`
	ID                       json.RawMessage `json:"id,omitempty"`
	Successful               *bool           `json:"successful,omitempty"`
	Error                    string          `json:"error,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	Subscription             json.RawMessage `json:"subscription,omitempty"`
	Version                  string          `json:"version,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	Advice                   *Advice         `json:"advice,omitempty"`
	Ext                      any             `json:"ext,omitempty"` // ackExt, *eventExt
}

var (
	yes = true
	no  = false
)

// ok is a successful reply to m.
func ok(m *message) *reply {
	return &reply{Channel: m.Channel, ID: m.ID, Successful: &yes, ClientID: m.ClientID}
}

// failed is an unsuccessful reply to m with err, a Bayeux error.
func failed(m *message, err *Error) *reply {
	r := &reply{Channel: m.Channel, ID: m.ID, Successful: &no, Error: err.String(), ClientID: m.ClientID}
	if err.Advice != nil {
		r.Advice = err.Advice
	}
	return r
}

// Error is a Bayeux error (Bayeux 1.0, section 5.1.4): a code, its
// arguments and a message, written "code:arg1,arg2:message", and the
// advice that goes with it.
type Error struct {
	Code    int
	Args    []string
	Message string
	Advice  *Advice
}

// argEscaper keeps an argument (a channel may hold ':') from splitting
// the error string's fields.
var argEscaper = strings.NewReplacer(":", "%3A", ",", "%2C")

// String is the error as Bayeux writes it; ':' and ',' in an argument
// are percent-encoded.
func (e *Error) String() string {
	args := make([]string, len(e.Args))
	for i, a := range e.Args {
		args[i] = argEscaper.Replace(a)
	}
	return strconv.Itoa(e.Code) + ":" + strings.Join(args, ",") + ":" + e.Message
}

func (e *Error) Error() string { return e.String() }

func bayeuxError(code int, arg, msg string) *Error {
	var args []string
	if arg != "" {
		args = []string{arg}
	}
	return &Error{Code: code, Args: args, Message: msg}
}

// unknownClient is the reply to a clientId that names no online session:
// the client must handshake again.
func unknownClient() *Error {
	return &Error{Code: 402, Message: "Unknown client", Advice: &Advice{Reconnect: ReHandshake}}
}

// splitMessages reads a request body: a JSON array of messages, or a
// single message object.
func splitMessages(body []byte) ([]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("the request has no messages")
	}
	if body[0] == '{' {
		if !json.Valid(body) {
			return nil, errors.New("the body is not valid JSON")
		}
		return []json.RawMessage{body}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, errors.New("the body must be a JSON array of Bayeux messages")
	}
	switch {
	case len(raws) == 0:
		return nil, errors.New("the request has no messages")
	case len(raws) > MaxMessages:
		return nil, fmt.Errorf("at most %d messages in one request", MaxMessages)
	}
	return raws, nil
}

// decode reads one message; a message that is not an object with the
// fields' types gets a 400 reply naming what is wrong.
func decode(raw json.RawMessage) (*message, *Error) {
	var m message
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, bayeuxError(400, "", "not a Bayeux message: "+jsonProblem(err))
	}
	if m.Channel == "" {
		m.Channel = "/meta/unknown"
		return &m, bayeuxError(400, "", "the message has no channel")
	}
	if len(m.ID) > 0 && m.ID[0] != '"' && (m.ID[0] < '0' || m.ID[0] > '9') && m.ID[0] != '-' {
		return &m, bayeuxError(400, m.Channel, "id must be a string or a number")
	}
	return &m, nil
}

// jsonProblem says briefly what encoding/json found wrong.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return "field " + te.Field + " must not be a JSON " + te.Value
	}
	return "it must be a JSON object"
}

// readExt reads m's ext; an ext that is not an object (or whose fields
// have the wrong types) is a 400.
func readExt(m *message) (ext, *Error) {
	var e ext
	if len(m.Ext) == 0 || string(m.Ext) == "null" {
		return e, nil
	}
	if err := json.Unmarshal(m.Ext, &e); err != nil {
		return e, bayeuxError(400, m.Channel, "ext: "+jsonProblem(err))
	}
	return e, nil
}

// subscriptions reads a subscribe or unsubscribe message's subscription: a
// channel name or a list of them.
func subscriptions(m *message) ([]string, *Error) {
	var one string
	if json.Unmarshal(m.Subscription, &one) == nil && one != "" {
		return []string{one}, nil
	}
	var list []string
	if json.Unmarshal(m.Subscription, &list) == nil && len(list) > 0 && len(list) <= session.MaxTopics {
		return list, nil
	}
	return nil, bayeuxError(400, m.Channel, fmt.Sprintf("subscription must be a channel name or a list of 1-%d of them", session.MaxTopics))
}

// The kinds of channel (Bayeux 1.0, section 2.2).
type channelKind int

const (
	invalidChannel channelKind = iota
	metaChannel
	serviceChannel
	reservedChannel // /longpoll/**: this server's own
	plainChannel
)

// classify says what kind of channel name ch is: meta, service, this
// server's reserved prefix, or a plain channel (whose topic is ch without
// its leading slash).
func classify(ch string) channelKind {
	switch {
	case !strings.HasPrefix(ch, "/") || len(ch) < 2:
		return invalidChannel
	case ch == "/meta" || strings.HasPrefix(ch, "/meta/"):
		return metaChannel
	case ch == "/service" || strings.HasPrefix(ch, "/service/"):
		return serviceChannel
	case ch == "/longpoll" || strings.HasPrefix(ch, "/longpoll/"):
		return reservedChannel
	}
	return plainChannel
}

// ChannelOf is the channel that carries messages on topic: "/" + topic.
func ChannelOf(topic string) string { return "/" + topic }

// TopicOf is the topic of a plain channel: the channel without its
// leading slash.
func TopicOf(channel string) string { return strings.TrimPrefix(channel, "/") }
