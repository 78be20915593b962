package auth_test

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longpoll/longpoll/auth"
	"github.com/longpoll/longpoll/session"
)

const (
	secret1 = "s1-0123456789abcdef0123456789abcdef"
	secret2 = "s2-0123456789abcdef0123456789abcdef"
)

var now = time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)

func verifier(t *testing.T, secrets ...string) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secrets: secrets, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// token returns an HS256 token signed with secret: sub alice, exp in an
// hour, plus extra (a nil value deletes a claim).
func token(t *testing.T, secret string, extra jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return sign(t, jwt.SigningMethodHS256, []byte(secret), c)
}

func TestNewVerifier(t *testing.T) {
	if _, err := auth.NewVerifier(auth.Config{}); err == nil {
		t.Error("no secret accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{Secrets: []string{strings.Repeat("x", auth.MinSecretBytes-1)}}); err == nil {
		t.Error("a 31-byte secret accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{Secrets: []string{secret1, "short"}}); err == nil {
		t.Error("a short second secret accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{Secrets: []string{strings.Repeat("x", auth.MinSecretBytes)}}); err != nil {
		t.Errorf("a 32-byte secret: %v", err)
	}
}

func TestVerify(t *testing.T) {
	v := verifier(t, secret1, secret2)
	ok := func(tok string) *auth.Grant {
		t.Helper()
		g, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return g
	}
	g := ok(token(t, secret1, jwt.MapClaims{"dev": "lamp-1", "topics": []string{"home/*", "news"}}))
	if g.UserID != "alice" || g.DeviceID != "lamp-1" || !slices.Equal(g.Topics, []string{"home/*", "news"}) || !g.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("grant %+v", g)
	}
	// rotation: the second secret verifies too
	if g := ok(token(t, secret2, nil)); g.UserID != "alice" || g.DeviceID != "" {
		t.Errorf("grant of the second secret %+v", g)
	}
	// within the default leeway
	ok(token(t, secret1, jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}))
	ok(token(t, secret1, jwt.MapClaims{"nbf": now.Add(10 * time.Second).Unix(), "iat": now.Unix()}))

	cases := map[string]struct {
		tok  string
		want string // in the error message
	}{
		"missing":           {"", "Authorization"},
		"garbage":           {"not-a-jwt", "malformed"},
		"two segments":      {"a.b", "malformed"},
		"bad base64":        {"!!!.???.***", "malformed"},
		"wrong key":         {token(t, "other-0123456789abcdef0123456789abcdef", nil), "signature"},
		"tampered payload":  {tamper(token(t, secret1, nil)), "signature"},
		"expired":           {token(t, secret1, jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), "expired"},
		"no exp":            {token(t, secret1, jwt.MapClaims{"exp": nil}), "exp"},
		"exp not a number":  {token(t, secret1, jwt.MapClaims{"exp": "tomorrow"}), "malformed"},
		"not yet valid":     {token(t, secret1, jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}), "not valid yet"},
		"issued in future":  {token(t, secret1, jwt.MapClaims{"iat": now.Add(time.Hour).Unix()}), "future"},
		"no sub":            {token(t, secret1, jwt.MapClaims{"sub": nil}), "sub"},
		"bad sub":           {token(t, secret1, jwt.MapClaims{"sub": "al ice"}), "sub"},
		"bad dev":           {token(t, secret1, jwt.MapClaims{"dev": strings.Repeat("d", 129)}), "dev"},
		"topics not a list": {token(t, secret1, jwt.MapClaims{"topics": "news"}), "malformed"},
		"bad topic pattern": {token(t, secret1, jwt.MapClaims{"topics": []string{"ho*me"}}), "topics"},
		"empty pattern":     {token(t, secret1, jwt.MapClaims{"topics": []string{""}}), "topics"},
		"too many patterns": {token(t, secret1, jwt.MapClaims{"topics": make([]string, auth.MaxTopicPatterns+1)}), "topics"},
		"HS384":             {sign(t, jwt.SigningMethodHS384, []byte(secret1), jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}), "signature"},
		"alg none":          {sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}), "signature"},
		"crit header":       {critToken(t, secret1), "crit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g, err := v.Verify(tc.tok)
			if !errors.Is(err, auth.ErrUnauthorized) || g != nil {
				t.Fatalf("Verify = %v, %v; want ErrUnauthorized", g, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// critToken is a valid token but for a crit header (RFC 7515 4.1.11)
// naming an extension no server understands.
func critToken(t *testing.T, secret string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "x-ext": 1})
	tok.Header["crit"] = []string{"x-ext"}
	s, err := tok.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper changes the payload of a token (sub alice -> mallory) and keeps
// the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := jwt.NewParser().DecodeSegment(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(p), "alice", "mallory", 1)))
	return strings.Join(parts, ".")
}

func TestLeeway(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{Secrets: []string{secret1}, Leeway: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(token(t, secret1, jwt.MapClaims{"exp": now.Add(-time.Second).Unix()})); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("no leeway: expired a second ago accepted: %v", err)
	}
}

func grant(t *testing.T, extra jwt.MapClaims) *auth.Grant {
	t.Helper()
	g, err := verifier(t, secret1).Verify(token(t, secret1, extra))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestAllows(t *testing.T) {
	anyTopic := grant(t, nil)
	none := grant(t, jwt.MapClaims{"topics": []string{}})
	some := grant(t, jwt.MapClaims{"topics": []string{"home/*", "news", "$presence"}})
	all := grant(t, jwt.MapClaims{"topics": []string{"*"}})
	for _, tc := range []struct {
		g     *auth.Grant
		topic string
		want  bool
	}{
		{anyTopic, "whatever", true}, {anyTopic, "$presence", true},
		{none, "news", false}, {none, "$heartbeat", false},
		{some, "news", true}, {some, "news/x", false}, {some, "new", false},
		{some, "home/kitchen", true}, {some, "home/", true}, {some, "home", false}, {some, "homer", false},
		{some, "$presence", true}, {some, "$heartbeat", false},
		{all, "a/b/c", true}, {all, "$presence", true},
	} {
		if got := tc.g.Allows(tc.topic); got != tc.want {
			t.Errorf("%v.Allows(%q) = %v, want %v", tc.g.Topics, tc.topic, got, tc.want)
		}
	}
}

func TestGrantConnect(t *testing.T) {
	g := grant(t, jwt.MapClaims{"dev": "lamp", "topics": []string{"home/*"}})
	req, err := g.Connect(session.Request{DeviceID: "lamp", Topics: []string{"home/kitchen"}})
	if err != nil || req.UserID != "alice" || req.DeviceID != "lamp" {
		t.Fatalf("Connect = %+v, %v; want userId filled from sub", req, err)
	}
	if req, err := g.Connect(session.Request{DeviceID: "lamp", UserID: "alice"}); err != nil || req.UserID != "alice" {
		t.Errorf("matching userId: %+v, %v", req, err)
	}
	for name, r := range map[string]session.Request{
		"other user":    {DeviceID: "lamp", UserID: "bob"},
		"other device":  {DeviceID: "tv"},
		"topic outside": {DeviceID: "lamp", Topics: []string{"home/a", "office/b"}},
		"system topic":  {DeviceID: "lamp", Topics: []string{"$presence"}},
	} {
		if _, err := g.Connect(r); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
	// no dev claim: any device
	if _, err := grant(t, nil).Connect(session.Request{DeviceID: "anything", Topics: []string{"x"}}); err != nil {
		t.Errorf("no dev, no topics claim: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":    "abc",
		"bearer abc":    "abc",
		"BEARER  abc ":  "abc",
		"Basic abc":     "",
		"Bearer":        "",
		"abc":           "",
		"":              "",
		"Bearerabc def": "",
	} {
		if got := auth.BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}
