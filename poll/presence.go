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
	res := Result{}
	runWakeups(fanOut(h.store, h.store.All(), env, &res))
	return res.Delivered
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
	res := Result{}
	runWakeups(fanOut(h.store, h.store.ByTopic(session.TopicPresence), env, &res))
}
