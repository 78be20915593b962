package poll

import "testing"

func TestMessageIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := newMessageID()
		if len(id) != 26 || id[:2] != "m_" || seen[id] {
			t.Fatalf("message ID %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}
