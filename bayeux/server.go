// Package bayeux speaks Bayeux 1.0 over its long-polling connection type,
// so that unmodified CometD and Faye clients use longpoll: a Bayeux client
// is a longpoll session (its clientId is the session's id), a channel
// "/a/b" is the topic "a/b", a /meta/connect is a poll, and the CometD
// acknowledgement extension's batch number is the poll's cursor.
//
// The Server turns one request's messages into the replies and delivered
// messages to write back, calling the delivery hub (package poll); the
// HTTP edge (package api) reads the request, applies its defences through
// an Edge, and writes what Handle returns. Nothing here knows HTTP.
//
// What a Bayeux client gets (docs/API.md, "Bayeux"):
//   - /meta/handshake connects a session: its device is ext.deviceId, or
//     a generated "bayeux-…" id; ext.userId names its user; with client
//     authentication the token is ext.token (or the request's
//     Authorization header), with the claims of POST /connect.
//   - /meta/subscribe and /meta/unsubscribe change the session's topics,
//     durably: "/a/b" is topic "a/b", "/a/*" and "/a/**" are patterns
//     that a push to a topic below "a" reaches.
//   - A publish to "/a/b" is a send to topic "a/b" from the session (the
//     native sessions of that topic get it with its from set).
//   - /meta/connect is held like GET /data. Messages on a topic the
//     client subscribes to arrive on that topic's channel, everything
//     else for it (pushes to its session, device or user, broadcasts,
//     and topics that would pose as meta, service or /longpoll channels)
//     on Direct; $heartbeat only to a subscriber of /$heartbeat. With the acknowledgement
//     extension (ext.ack) the client's batch number is the cursor: a
//     message is removed only once acknowledged, and comes again after a
//     lost answer or a restart. Without it a message is acknowledged as
//     soon as an answer holds it (at most once, as Bayeux promises).
//   - A held connect whose session ends (its disconnect, a replacement by
//     a newer handshake of the device) is answered successfully with
//     advice reconnect "none": the client stops.
package bayeux

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/longpoll/longpoll/poll"
	"github.com/longpoll/longpoll/session"
	"github.com/longpoll/longpoll/wire"
)

// Version is the Bayeux version spoken, and the minimum accepted.
const Version = "1.0"

// Defaults of Config's zero fields.
const (
	DefaultTimeout    = 30 * time.Second
	DefaultMaxTimeout = 120 * time.Second
)

// Config configures a Server.
type Config struct {
	// Timeout is how long a /meta/connect without advice.timeout is held
	// (times Jitter), and the advice.timeout of every reply.
	Timeout time.Duration
	// MaxTimeout caps the advice.timeout a client asks for.
	MaxTimeout time.Duration
	// Jitter returns the fraction of Timeout to hold; nil: a uniform
	// value in [0.8, 1.0).
	Jitter func() float64
	// Logger receives error lines; nil discards them.
	Logger *slog.Logger
	// Polled, when set, hears of every held /meta/connect as it ends:
	// when it began, what the hub answered, and whether the client had
	// gone (the edge's poll metrics).
	Polled func(start time.Time, msgs []poll.Message, err error, gone bool)
}

// Edge is what the HTTP edge checks for the request at hand. Each method
// returns nil or the error to answer (an *wire.Error, such as a 429 with
// its retry time, or a domain error).
type Edge interface {
	// Handshake admits a new client: the connect rate limit, the connect
	// token (token, or the request's Authorization header when empty) and
	// its claims, as POST /connect does. It returns the request to
	// connect.
	Handshake(req session.Request, token string) (session.Request, error)
	// Publish admits one publish (the /send rate limit).
	Publish() error
	// Park takes a place for a held /meta/connect (the cap on open polls
	// per address); release, which may be nil, gives it back.
	Park() (release func(), err error)
}

// Server answers Bayeux requests over a hub. It keeps no state of its
// own: everything a client has is its session's, in the hub's store.
type Server struct {
	hub *poll.Hub
	cfg Config
	log *slog.Logger
}

// New returns a Server over hub.
func New(hub *poll.Hub, cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func() float64 { return 0.8 + 0.2*rand.Float64() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{hub: hub, cfg: cfg, log: cfg.Logger}
}

// Handle answers one request's body, a message or an array of them, and
// returns the status and the JSON array to write. Every message gets its
// reply, in order; a /meta/connect's comes last, after the messages it
// delivers, and it is held (until a message arrives, its timeout, or ctx
// ends) only when it is the request's one message needing an answer. A
// body that is not Bayeux is a 400 whose array holds one failed reply; an
// answer is never a 5xx. When ctx ends while a connect is held (the client
// left), its messages stay unacknowledged and Handle's answer is moot.
func (s *Server) Handle(ctx context.Context, body []byte, edge Edge) (int, []byte) {
	raws, err := splitMessages(body)
	if err != nil {
		return 400, encode([]*reply{{Channel: "/meta/unknown", Successful: &no, Error: bayeuxError(400, "", err.Error()).String()}})
	}
	out := make([]*reply, 0, len(raws))
	var connect *message
	for _, raw := range raws {
		m, berr := decode(raw)
		switch {
		case berr != nil:
			if m == nil {
				m = &message{Channel: "/meta/unknown"}
			}
			out = append(out, failed(m, berr))
		case m.Channel == Connect && connect == nil:
			connect = m
		case m.Channel == Connect:
			out = append(out, failed(m, bayeuxError(400, Connect, "one /meta/connect per request")))
		default:
			out = append(out, s.handle(m, edge))
		}
	}
	if connect != nil {
		out = append(out, s.connect(ctx, connect, len(out) == 0, edge)...)
	}
	return 200, encode(out)
}

func encode(out []*reply) []byte {
	b, err := json.Marshal(out)
	if err != nil { // raw fields came from valid JSON: cannot happen
		return []byte(`[{"channel":"/meta/unknown","successful":false,"error":"500::cannot encode the reply"}]`)
	}
	return b
}

// handle answers one message other than /meta/connect.
func (s *Server) handle(m *message, edge Edge) *reply {
	switch m.Channel {
	case Handshake:
		return s.handshake(m, edge)
	case Subscribe, Unsubscribe:
		return s.subscribe(m, edge)
	case Disconnect:
		return s.disconnect(m)
	}
	switch classify(m.Channel) {
	case metaChannel:
		return failed(m, bayeuxError(400, m.Channel, "unknown meta channel"))
	case serviceChannel:
		return failed(m, bayeuxError(404, m.Channel, "no service on this channel (service channels are not broadcast)"))
	case reservedChannel:
		return failed(m, bayeuxError(403, m.Channel, "channels under /longpoll are the server's own; nobody may publish to them"))
	case invalidChannel:
		return failed(m, bayeuxError(405, m.Channel, "invalid channel: a channel name starts with /"))
	}
	return s.publish(m, edge)
}

// advice is the advice of a successful handshake and connect.
func (s *Server) advice() *Advice {
	return &Advice{Reconnect: Retry, Interval: 0, Timeout: s.cfg.Timeout.Milliseconds()}
}

// handshake connects a new session for the client.
func (s *Server) handshake(m *message, edge Edge) *reply {
	if v, _, _ := strings.Cut(m.Version, "."); m.Version != "" && v != "1" {
		return failed(m, &Error{Code: 400, Args: []string{m.Version}, Message: "unsupported Bayeux version (this server speaks " + Version + ")", Advice: &Advice{Reconnect: None}})
	}
	if len(m.SupportedConnectionTypes) > 0 && !slices.Contains(m.SupportedConnectionTypes, LongPolling) && !slices.Contains(m.SupportedConnectionTypes, CrossOriginLongPolling) {
		r := failed(m, &Error{Code: 400, Args: m.SupportedConnectionTypes, Message: "no connection type in common: this server supports long-polling (and Faye's cross-origin-long-polling) only", Advice: &Advice{Reconnect: None}})
		r.SupportedConnectionTypes = connectionTypes
		return r
	}
	e, berr := readExt(m)
	if berr != nil {
		return failed(m, berr)
	}
	device := e.DeviceID
	if device == "" {
		device = "bayeux-" + session.NewID()
	}
	req, err := session.NewRequest(device, e.UserID, nil, nil)
	if err == nil {
		req, err = edge.Handshake(req, e.Token)
	}
	var sess *session.Session
	if err == nil {
		sess, err = s.hub.Connect(req)
	}
	if err != nil {
		berr := s.fromDomain(m.Channel, err)
		switch {
		case berr.Advice != nil:
		case berr.Code == 429 || berr.Code == 503:
			berr.Advice = &Advice{Reconnect: ReHandshake, Interval: max(retryMillis(err), 1000)}
		default: // bad input or credentials do not get better by retrying
			berr.Advice = &Advice{Reconnect: None}
		}
		r := failed(m, berr)
		r.ClientID = ""
		return r
	}
	r := ok(m)
	r.ClientID = sess.ID
	r.Version, r.MinimumVersion = Version, Version
	r.SupportedConnectionTypes = connectionTypes
	r.Advice = s.advice()
	if string(e.Ack) == "true" {
		r.Ext = ackExt{Ack: true} // the acknowledgement extension is on
	}
	return r
}

// subscribe adds or drops the subscriptions of a subscribe or
// unsubscribe message, all of them or none. Each such message counts
// against the send rate limit (Edge.Publish): it is a durable write.
func (s *Server) subscribe(m *message, edge Edge) *reply {
	channels, berr := subscriptions(m)
	if berr != nil {
		return s.refused(m, berr)
	}
	sess, err := s.hub.Session(m.ClientID)
	if err != nil || m.ClientID == "" {
		return s.refused(m, unknownClient())
	}
	if err := edge.Publish(); err != nil { // each change is a durable write: the send rate limit
		be := s.fromDomain(m.Channel, err)
		be.Advice = &Advice{Reconnect: Retry, Interval: retryMillis(err)}
		return s.refused(m, be)
	}
	topics := make([]string, 0, len(channels))
	for _, ch := range channels {
		switch classify(ch) {
		case metaChannel:
			return s.refused(m, bayeuxError(403, ch, "meta channels cannot be subscribed to"))
		case serviceChannel:
			return s.refused(m, bayeuxError(403, ch, "service channels cannot be subscribed to"))
		case reservedChannel:
			if ch == Direct {
				continue // always delivered
			}
			return s.refused(m, bayeuxError(403, ch, "channels under /longpoll are the server's own; the only one is "+Direct))
		case invalidChannel:
			return s.refused(m, bayeuxError(405, ch, "invalid channel: a channel name starts with /"))
		}
		topic := TopicOf(ch)
		if err := checkSegments(topic); err != nil {
			return s.refused(m, bayeuxError(405, ch, err.Error()))
		}
		if err := session.CheckPattern(topic); err != nil {
			return s.refused(m, bayeuxError(405, ch, "invalid channel: "+channelProblem(err)))
		}
		if m.Channel == Subscribe && !sess.Permit.Allows(topic) {
			return s.refused(m, bayeuxError(403, ch, "the token's topics claim does not allow this channel"))
		}
		topics = append(topics, topic)
	}
	if len(topics) > 0 {
		add, remove := topics, []string(nil)
		if m.Channel == Unsubscribe {
			add, remove = nil, topics
		}
		if _, err := s.hub.Subscribe(m.ClientID, add, remove); err != nil {
			if errors.Is(err, poll.ErrSessionNotFound) { // ended meanwhile
				return s.refused(m, unknownClient())
			}
			return s.refused(m, s.fromDomain(channels[0], err))
		}
	}
	r := ok(m)
	r.Subscription = m.Subscription
	return r
}

// refused is the failed reply to a subscribe or unsubscribe.
func (s *Server) refused(m *message, err *Error) *reply {
	r := failed(m, err)
	r.Subscription = m.Subscription
	return r
}

// channelProblem is session's complaint about a topic, in a channel's
// terms.
func channelProblem(err error) string {
	return strings.Replace(err.Error(), "topic must be 1-", "a channel is / and 1-", 1) +
		"; the last segment may be * or **"
}

// disconnect ends the session, first acknowledging up to ext.ack when the
// client sends one (the acknowledgement extension's batch, as on a
// connect); its unacknowledged messages wait in its device's offline
// store, as after DELETE /session.
func (s *Server) disconnect(m *message) *reply {
	if m.ClientID == "" {
		return failed(m, unknownClient())
	}
	e, berr := readExt(m)
	if berr != nil {
		return failed(m, berr)
	}
	ack, acking, berr := batchAck(e)
	if berr != nil {
		return failed(m, berr)
	}
	if err := s.hub.Disconnect(m.ClientID, ack, acking); err != nil {
		if errors.Is(err, poll.ErrSessionNotFound) {
			return failed(m, unknownClient())
		}
		return failed(m, s.fromDomain(m.Channel, err))
	}
	return ok(m)
}

// publish sends data to the channel's topic from the client's session,
// as POST /send to that topic does.
func (s *Server) publish(m *message, edge Edge) *reply {
	topic := TopicOf(m.Channel)
	if session.IsPattern(topic) {
		return failed(m, bayeuxError(405, m.Channel, "cannot publish to a wildcard channel"))
	}
	if !session.ValidTopic(topic) || strings.HasPrefix(topic, "$") {
		return failed(m, bayeuxError(405, m.Channel, "invalid channel: a channel is / and 1-200 characters of [A-Za-z0-9._:/@-], not starting with $"))
	}
	if err := checkSegments(topic); err != nil {
		return failed(m, bayeuxError(405, m.Channel, err.Error()))
	}
	if len(m.Data) == 0 {
		return failed(m, bayeuxError(400, m.Channel, "a publish needs data"))
	}
	if m.ClientID == "" {
		return failed(m, unknownClient())
	}
	sess, err := s.hub.Session(m.ClientID)
	if err != nil {
		return failed(m, unknownClient())
	}
	if err := edge.Publish(); err != nil {
		return failed(m, s.fromDomain(m.Channel, err))
	}
	if err := sess.Permit.CheckSend(topic, ""); err != nil {
		return failed(m, bayeuxError(403, m.Channel, "the token's topics claim does not allow this channel"))
	}
	if len(m.Data) > poll.MaxDataBytes {
		return failed(m, bayeuxError(413, m.Channel, "data is larger than 64 KiB"))
	}
	p := []poll.Push{{To: poll.Target{Topic: topic}, Topic: topic, Data: m.Data}}
	if err := s.hub.CheckSend(p); err == nil {
		err = s.hub.Room(p)
	}
	if err == nil {
		_, err = s.hub.Send(m.ClientID, p[0])
	}
	if err != nil {
		if errors.Is(err, poll.ErrSessionNotFound) {
			return failed(m, unknownClient())
		}
		return failed(m, s.fromDomain(m.Channel, err))
	}
	r := ok(m)
	r.ClientID = ""
	return r
}

// connect holds the client's poll, when hold allows, and returns the
// messages it delivers and then its reply.
func (s *Server) connect(ctx context.Context, m *message, hold bool, edge Edge) []*reply {
	if m.ClientID == "" {
		return []*reply{failed(m, unknownClient())}
	}
	if m.ConnectionType != "" && m.ConnectionType != LongPolling && m.ConnectionType != CrossOriginLongPolling {
		return []*reply{failed(m, &Error{Code: 400, Args: []string{m.ConnectionType}, Message: "unsupported connection type: this server supports long-polling (and Faye's cross-origin-long-polling) only", Advice: &Advice{Reconnect: ReHandshake}})}
	}
	e, berr := readExt(m)
	if berr != nil {
		return []*reply{failed(m, berr)}
	}
	// The acknowledgement extension's batch number is the cursor.
	ack, acking, berr := batchAck(e)
	if berr != nil {
		return []*reply{failed(m, berr)}
	}
	wait := time.Duration(0)
	if hold {
		wait = time.Duration(float64(s.cfg.Timeout) * s.cfg.Jitter())
		if m.Advice != nil && m.Advice.Timeout != nil {
			wait = time.Duration(min(max(*m.Advice.Timeout, 0), float64(s.cfg.MaxTimeout.Milliseconds()))) * time.Millisecond
		}
	}
	release, err := edge.Park()
	if err != nil {
		be := s.fromDomain(Connect, err)
		be.Advice = &Advice{Reconnect: Retry, Interval: retryMillis(err)}
		return []*reply{failed(m, be)}
	}
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, wait)
	msgs, err := s.hub.Poll(pctx, m.ClientID, ack, acking)
	cancel()
	if release != nil {
		release()
	}
	if s.cfg.Polled != nil {
		s.cfg.Polled(start, msgs, err, ctx.Err() != nil)
	}
	if errors.Is(err, poll.ErrSessionClosed) {
		// Ended by its /meta/disconnect (whose reply may still be on its
		// way), or replaced by a newer handshake of its device: the client
		// stops, as CometD's server tells it, and as a native poll
		// answered 410 does. (A failed reply would make a disconnecting
		// CometD client abort its disconnect.)
		r := ok(m)
		r.Advice = &Advice{Reconnect: None}
		return []*reply{r}
	}
	if err != nil {
		return []*reply{failed(m, s.connectError(err))}
	}
	if ctx.Err() != nil {
		return nil // the client left: its messages stay for its next connect
	}
	sess, err := s.hub.Session(m.ClientID)
	if err != nil { // ended right after the poll: as if it had ended during it
		r := ok(m)
		r.Advice = &Advice{Reconnect: None}
		return []*reply{r}
	}
	out := make([]*reply, 0, len(msgs)+1)
	last := ack
	for _, msg := range msgs {
		last = msg.Seq
		if ev := event(sess, msg); ev != nil {
			out = append(out, ev)
		}
	}
	if !acking && len(msgs) > 0 {
		// Without the extension, an answer that holds a message is its
		// delivery. A failure here (the session ended meanwhile) leaves
		// them to be moved with its other messages.
		if err := s.hub.Ack(m.ClientID, last); err != nil && !errors.Is(err, poll.ErrSessionNotFound) && !errors.Is(err, poll.ErrSessionClosed) {
			s.log.Warn("bayeux: acknowledging a delivered batch failed", "session", session.ShortID(m.ClientID), "err", err)
		}
	}
	r := ok(m)
	r.Advice = s.advice()
	if acking {
		r.Ext = ackExt{Ack: last}
	}
	return append(out, r)
}

// batchAck reads the acknowledgement extension's batch number from ext:
// the cursor to acknowledge up to, and whether there is one (true and
// false are the handshake's form, not a batch).
func batchAck(e ext) (ack uint64, ok bool, berr *Error) {
	if len(e.Ack) == 0 || e.Ack[0] == 't' || e.Ack[0] == 'f' || string(e.Ack) == "null" {
		return 0, false, nil
	}
	var f float64
	if json.Unmarshal(e.Ack, &f) != nil || f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return 0, false, bayeuxError(400, "", "ext.ack must be the batch number of the last connect reply")
	}
	return uint64(f), true, nil
}

// event is msg as a Bayeux client receives it, or nil for a heartbeat
// that the client does not subscribe to.
func event(sess *session.Session, msg poll.Message) *reply {
	ch := Direct
	switch {
	case msg.Topic != "" && session.Matches(sess.Topics, msg.Topic) && deliverable(msg.Topic):
		ch = ChannelOf(msg.Topic)
	case msg.Topic == session.TopicHeartbeat:
		return nil
	}
	id, _ := json.Marshal(msg.ID)
	return &reply{Channel: ch, Data: msg.Data, ID: id, Ext: &eventExt{Longpoll: eventInfo{
		Seq: msg.Seq, Topic: msg.Topic, From: msg.From, SentAt: msg.SentAt.UTC().Format(poll.TimeFormat)}}}
}

// eventExt is a delivered message's ext: what longpoll knows of it.
type eventExt struct {
	Longpoll eventInfo `json:"longpoll"`
}

type eventInfo struct {
	Seq    uint64 `json:"seq"`
	Topic  string `json:"topic,omitempty"`
	From   string `json:"from,omitempty"`
	SentAt string `json:"sentAt"`
}

// ackExt is the ext of a handshake or connect reply with the
// acknowledgement extension on: true, or the batch (the last seq sent).
type ackExt struct {
	Ack any `json:"ack"`
}

// deliverable reports whether a message on topic may arrive on the
// topic's own channel: a plain channel with no empty segment. A native
// topic such as "meta/disconnect", "service/x" or "longpoll/direct"
// (which a /** subscriber receives) would otherwise pose as a meta reply
// or this server's channel, and "a/" is no channel at all: those arrive
// on Direct, their topic in ext.longpoll.
func deliverable(topic string) bool {
	return classify(ChannelOf(topic)) == plainChannel && checkSegments(topic) == nil
}

// connectError is the Bayeux form of a held connect's failure, with the
// advice that gets the client going again.
func (s *Server) connectError(err error) *Error {
	switch {
	case errors.Is(err, poll.ErrSessionNotFound):
		return unknownClient()
	case errors.Is(err, poll.ErrSuperseded):
		return &Error{Code: 409, Message: "superseded by a newer /meta/connect of this client", Advice: &Advice{Reconnect: Retry, Interval: 1000}}
	case errors.Is(err, poll.ErrInvalidCursor):
		return &Error{Code: 400, Message: "ext.ack is beyond the newest message of this client", Advice: &Advice{Reconnect: ReHandshake}}
	}
	be := s.fromDomain(Connect, err)
	be.Advice = &Advice{Reconnect: Retry, Interval: max(retryMillis(err), 1000)}
	return be
}

// fromDomain is the Bayeux form of a domain or edge error: the status and
// message of API.md's table (wire.ErrorOf), about channel.
func (s *Server) fromDomain(channel string, err error) *Error {
	we := wire.ErrorOf(err)
	if we.Status >= 500 && we.Status != 503 {
		s.log.Error("bayeux: request failed", "channel", channel, "err", err)
		return &Error{Code: 503, Args: []string{channel}, Message: "the server could not do this; retry later", Advice: &Advice{Reconnect: Retry, Interval: 1000}}
	}
	return &Error{Code: we.Status, Args: []string{channel}, Message: we.Message}
}

// retryMillis is err's retry time (wire.Error.RetryAfter) in
// milliseconds, 0 when it has none.
func retryMillis(err error) int64 { return wire.ErrorOf(err).RetryAfter.Milliseconds() }

// checkSegments refuses a channel with an empty segment ("/a//b", "/a/"),
// which a topic name would allow.
func checkSegments(topic string) error {
	if topic == "" || strings.HasSuffix(topic, "/") || strings.Contains(topic, "//") || strings.HasPrefix(topic, "/") {
		return errors.New("invalid channel: a segment is empty")
	}
	return nil
}
