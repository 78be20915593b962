package session

import (
	"errors"
	"fmt"
	"strings"
)

// ErrForbidden is wrapped by a refusal of something a session's permit (or
// its connect token: auth.ErrForbidden is this error) does not allow.
var ErrForbidden = errors.New("forbidden")

// Permit is the topics a session may send to (POST /send): the patterns of
// the topics claim of the token it connected with. A pattern is a topic
// name, matched exactly, or "prefix*", matching every topic that starts
// with prefix ("*": every topic, system topics included). The nil Permit
// allows every topic. A Permit is immutable.
type Permit struct {
	patterns []string
}

// NewPermit returns a permit for patterns (copied); an empty list allows
// no topic.
func NewPermit(patterns []string) *Permit {
	return &Permit{patterns: append([]string{}, patterns...)}
}

// Patterns returns the permit's patterns (nil for the nil Permit).
func (p *Permit) Patterns() []string {
	if p == nil {
		return nil
	}
	return append([]string{}, p.patterns...)
}

// Allows reports whether p allows topic.
func (p *Permit) Allows(topic string) bool {
	if p == nil {
		return true
	}
	for _, pat := range p.patterns {
		if prefix, ok := strings.CutSuffix(pat, "*"); ok {
			if strings.HasPrefix(topic, prefix) {
				return true
			}
		} else if pat == topic {
			return true
		}
	}
	return false
}

// CheckSend checks the topics of a message the session sends: its target
// topic (to.topic) and its topic label, either of which may be empty. A
// topic p does not allow fails with ErrForbidden.
func (p *Permit) CheckSend(target, label string) error {
	for _, t := range []string{target, label} {
		if t != "" && !p.Allows(t) {
			return fmt.Errorf("%w: topic %q is not allowed by the token's topics claim", ErrForbidden, t)
		}
	}
	return nil
}
