package api

import (
	"crypto/sha256"
	"net/http"
	"net/netip"
)

// The edge's defences, one concern a file: network filters and client
// addresses (filters.go), CORS and cross-origin writes (cors.go), rate
// limits, the poll cap and the header cap (limits.go), publisher keys
// (publisher.go) and connect tokens (clientauth.go). Each refusal is an
// *Error of API.md and changes no state.

// security is the state behind the defences. Its parts lock themselves.
type security struct {
	keyHashes [][sha256.Size]byte // publisher keys, hashed to a fixed length
	origins   map[string]bool     // allowed CORS origins, lower case
	anyOrigin bool                // "*": every origin
	cop       *http.CrossOriginProtection
	allow     []netip.Prefix
	deny      []netip.Prefix
	connects  *limiter // nil: no limit
	sends     *limiter
	polls     *pollCounter // nil: no cap
}

func newSecurity(cfg Config) *security {
	s := &security{
		origins:  map[string]bool{},
		cop:      http.NewCrossOriginProtection(),
		allow:    cfg.AllowNets,
		deny:     cfg.DenyNets,
		connects: newLimiter(cfg.ConnectLimit, cfg.Now),
		sends:    newLimiter(cfg.SendLimit, cfg.Now),
	}
	for _, k := range cfg.PublishKeys {
		s.keyHashes = append(s.keyHashes, sha256.Sum256([]byte(k)))
	}
	for _, o := range cfg.CORSOrigins {
		if o == "*" {
			s.anyOrigin = true
			continue
		}
		s.origins[normalizeOrigin(o)] = true
	}
	if cfg.MaxParkedPerIP > 0 {
		s.polls = &pollCounter{max: cfg.MaxParkedPerIP, n: map[string]int{}}
	}
	return s
}
