package poll

import (
	"encoding/json"
	"time"

	"github.com/longpoll/longpoll/session"
)

// Heartbeat sends a $heartbeat message {"time": now} to every online
// session and returns how many mailboxes got it.
func (h *Hub) Heartbeat(now time.Time) int {
	data, _ := json.Marshal(struct {
		Time string `json:"time"`
	}{now.UTC().Format(TimeFormat)})
	env, err := h.envelope(session.TopicHeartbeat, "", data, now, h.cfg.OfflineTTL)
	if err != nil {
		return 0
	}
	sessions, err := h.store.All()
	if err != nil || !h.systemFits(env, len(sessions)) {
		return 0
	}
	wake, delivered, _, _ := h.store.FanOut(sessions, env) // a heartbeat that failed is not sent again
	runWakeups(wake)
	return delivered
}

// presence tells the subscribers of $presence that s came or went.
func (h *Hub) presence(s *session.Session, event, reason string) {
	data, _ := json.Marshal(struct {
		Event    string `json:"event"`
		UserID   string `json:"userId"`
		DeviceID string `json:"deviceId"`
		Reason   string `json:"reason"`
	}{event, s.UserID, s.DeviceID, reason})
	env, err := h.envelope(session.TopicPresence, "", data, h.now(), h.cfg.OfflineTTL)
	if err != nil {
		return
	}
	sessions, err := h.store.ByTopic(session.TopicPresence)
	if err != nil || !h.systemFits(env, len(sessions)) {
		if err != nil {
			h.log.Warn("presence event not sent: the store failed", "event", event, "device", s.DeviceID, "err", err)
		}
		return
	}
	wake, _, _, err := h.store.FanOut(sessions, env)
	if err != nil {
		h.log.Warn("presence event not sent to every subscriber: the store failed", "event", event, "device", s.DeviceID, "err", err)
	}
	runWakeups(wake)
}

// systemFits reports whether the server's own message env, held by n
// mailboxes, fits half of Config.MaxStoredBytes. Heartbeats and presence
// events are not worth a publisher's room: past half the budget they are
// skipped (not stored, nobody told), so they can never be what fills it.
func (h *Hub) systemFits(env *Envelope, n int) bool {
	max := h.cfg.MaxStoredBytes
	return max < 0 || h.StoredBytes()+int64(env.Size())+int64(n)*holderCost <= max/2
}
