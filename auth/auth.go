// Package auth authenticates longpoll's clients: it verifies the connect
// token (an HS256 JWT signed with a shared secret) and turns its claims into
// a Grant, which says which user and device the session is and which topics
// it may subscribe and send to.
//
// The token's claims:
//
//	sub     required  the userId of the session
//	exp     required  expiry (NumericDate)
//	nbf,iat optional  checked when present
//	dev     optional  pins the deviceId
//	topics  optional  topic patterns: "a/b" exactly, "a/*" every topic
//	                  starting with "a/", "*" everything; absent means any
//	                  topic, [] means none
//
// A Verifier is immutable after NewVerifier and safe for concurrent use.
// Errors wrap ErrUnauthorized (no usable token: HTTP 401) or ErrForbidden
// (a valid token that does not allow the request: HTTP 403).
package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longpoll/longpoll/session"
)

// MinSecretBytes is the shortest secret NewVerifier accepts: RFC 7518
// (3.2) requires an HS256 key of at least the hash size, 256 bits.
const MinSecretBytes = 32

// DefaultLeeway is the clock skew allowed between the token issuer and this
// server when checking exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// MaxTopicPatterns caps the topics claim (a session has at most
// session.MaxTopics topics; a few more patterns are allowed for sends).
const MaxTopicPatterns = 256

var (
	// ErrUnauthorized: the token is missing, malformed, badly signed,
	// expired, or its claims are invalid.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the token is valid but does not allow what the request
	// asks for (another user or device, a topic outside its claim). It is
	// session.ErrForbidden, which a session's Permit also returns.
	ErrForbidden = session.ErrForbidden
)

// Config configures a Verifier.
type Config struct {
	// Secrets verify the token's signature; a token signed with any of them
	// is accepted (several allow rotation). Each is at least MinSecretBytes.
	Secrets []string
	// Leeway is the allowed clock skew; 0 means DefaultLeeway, negative none.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks connect tokens.
type Verifier struct {
	keys   jwt.VerificationKeySet
	parser *jwt.Parser
}

// NewVerifier returns a verifier for cfg. It fails when there is no secret
// or one is shorter than MinSecretBytes.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("auth: no secret")
	}
	v := &Verifier{}
	for _, s := range cfg.Secrets {
		if len(s) < MinSecretBytes {
			return nil, fmt.Errorf("auth: a secret must be at least %d bytes (256 bits) for HS256, got %d", MinSecretBytes, len(s))
		}
		v.keys.Keys = append(v.keys.Keys, []byte(s))
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)
	return v, nil
}

// claims is the token's payload. Topics is a pointer so that an absent
// claim (any topic) differs from an empty one (no topic).
type claims struct {
	Dev    string    `json:"dev,omitempty"`
	Topics *[]string `json:"topics,omitempty"`
	jwt.RegisteredClaims
}

// Validate checks the longpoll claims; jwt calls it after the registered
// ones (exp, nbf, iat).
func (c *claims) Validate() error {
	if c.Subject == "" {
		return claimError("sub (the userId) is required")
	}
	if !session.ValidID(c.Subject) {
		return claimError(fmt.Sprintf("sub must be a valid userId: 1-%d characters of [A-Za-z0-9._:@-]", session.MaxIDLen))
	}
	if c.Dev != "" && !session.ValidID(c.Dev) {
		return claimError(fmt.Sprintf("dev must be a valid deviceId: 1-%d characters of [A-Za-z0-9._:@-]", session.MaxIDLen))
	}
	if c.Topics != nil {
		if len(*c.Topics) > MaxTopicPatterns {
			return claimError(fmt.Sprintf("topics holds at most %d patterns", MaxTopicPatterns))
		}
		for _, p := range *c.Topics {
			if !validPattern(p) {
				return claimError(fmt.Sprintf("topics: %q is neither a topic name nor a prefix pattern ending in *", p))
			}
		}
	}
	return nil
}

// validPattern: "*", a topic name, or a topic name followed by "*".
func validPattern(p string) bool {
	if p == "*" {
		return true
	}
	return session.ValidTopic(strings.TrimSuffix(p, "*"))
}

// Verify checks token (the part after "Bearer ") and returns its grant.
// Every failure wraps ErrUnauthorized with a reason fit for the client.
func (v *Verifier) Verify(token string) (*Grant, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: an Authorization: Bearer <token> header is required", ErrUnauthorized)
	}
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// RFC 7515 (4.1.11): a token whose crit header names extensions
		// the recipient does not understand must be refused, and this one
		// understands none.
		if _, ok := t.Header["crit"]; ok {
			return nil, errCritical
		}
		return v.keys, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnauthorized, reason(err))
	}
	g := &Grant{UserID: c.Subject, DeviceID: c.Dev, Expires: c.ExpiresAt.Time}
	if c.Topics != nil {
		g.Topics = append([]string{}, *c.Topics...)
		g.permit = session.NewPermit(g.Topics)
	}
	return g, nil
}

// errCritical refuses a token with a crit header (RFC 7515 section 4.1.11).
var errCritical = errors.New("crit")

// reason describes a jwt error without echoing token content.
func reason(err error) string {
	switch {
	case errors.Is(err, errCritical):
		return "the token's crit header names extensions this server does not understand"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token's signature is invalid (HS256 with the connect secret is required)"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token has no exp claim"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "the token is not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token was issued in the future (iat)"
	}
	var ce claimError
	if errors.As(err, &ce) {
		return "invalid token claims: " + string(ce)
	}
	return "the token is invalid"
}

// claimError is a longpoll claim that fails Validate; its text is ours and
// safe to show to the client.
type claimError string

func (e claimError) Error() string { return string(e) }

// Grant is what a verified token allows. It is immutable.
type Grant struct {
	// UserID is the token's sub: the session's userId.
	UserID string
	// DeviceID is the token's dev, or "" for any device.
	DeviceID string
	// Topics are the topic patterns of the token's topics claim (see
	// Allows); meaningful only when the claim was present.
	Topics []string
	// Expires is the token's exp. The session it starts may outlive it: the
	// session ID is the credential from then on.
	Expires time.Time

	permit *session.Permit // nil: no topics claim
}

// Permit returns what the grant allows a session to subscribe and send
// to: nil (any topic) without a topics claim, else the claim's patterns
// (see session.Permit).
func (g *Grant) Permit() *session.Permit { return g.permit }

// Allows reports whether the grant allows topic (Permit().Allows).
func (g *Grant) Allows(topic string) bool { return g.permit.Allows(topic) }

// Connect checks a connect payload against the grant and returns it with
// the userId filled in from the token and the grant's Permit. A payload userId other than the
// token's sub, a deviceId other than its dev, or a topic outside its
// topics claim fails with ErrForbidden.
func (g *Grant) Connect(req session.Request) (session.Request, error) {
	if req.UserID != "" && req.UserID != g.UserID {
		return req, fmt.Errorf("%w: userId %q is not the token's user (sub)", ErrForbidden, req.UserID)
	}
	if g.DeviceID != "" && req.DeviceID != g.DeviceID {
		return req, fmt.Errorf("%w: deviceId %q is not the token's device (dev)", ErrForbidden, req.DeviceID)
	}
	for _, t := range req.Topics {
		if !g.Allows(t) {
			return req, fmt.Errorf("%w: topic %q is not allowed by the token's topics claim", ErrForbidden, t)
		}
	}
	req.UserID = g.UserID
	req.Permit = g.permit
	return req, nil
}

// BearerToken returns the token of an Authorization header value
// ("Bearer <token>", scheme case-insensitive), or "" when there is none.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
