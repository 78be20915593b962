// Package client is a Go client of the longpoll server
// (github.com/longpoll/longpoll): devices connect and receive messages,
// backends publish them. It uses only the standard library, and every call
// takes a context.
//
// # Devices
//
// A device connects with its deviceId (and optionally a userId and
// topics), then runs a receive loop:
//
//	c, _ := client.New("http://127.0.0.1:8080")
//	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "lamp-42", UserID: "alice"})
//	if err != nil { … }
//	err = dev.Run(ctx, func(ctx context.Context, m client.Message) error {
//		fmt.Println(m.Topic, string(m.Data))
//		return nil // acknowledged with the next poll
//	})
//
// Run has the delivery semantics of the browser client (public/longpoll.js):
// each poll acknowledges, with its cursor, every message the handler has
// returned nil for; each message reaches the handler exactly once and in
// order, across retries and reconnects (messages are also remembered by id,
// so one that the server hands to a new session again is skipped); network
// errors, 5xx and 429 are retried with exponential backoff and jitter,
// waiting at least the server's Retry-After; 404 session_not_found (the
// session expired or the server restarted) and 400 invalid_cursor connect
// again with the same device; 409 superseded and 410 session_closed stop
// Run with that error.
//
// # Publishers
//
// A backend pushes with the publish key (--publish-key) of the server;
// without a key configured, only loopback clients may publish:
//
//	c, _ := client.New("https://push.example.com", client.WithPublishKey(key))
//	res, err := c.Push(ctx, client.Push{To: client.Target{UserID: "alice"}, Topic: "alerts", Data: map[string]string{"text": "door open"}})
//
// Publisher calls are not retried: a push with an ID (an idempotency key)
// can be sent again safely after an error.
//
// # Errors
//
// A refusal by the server is an *Error with the status, the API's error code
// and message and the Retry-After; errors.Is matches it against the
// sentinels (ErrSessionNotFound, ErrMailboxFull, …). Anything else (a
// network error, a context's end) is returned as it is, wrapped.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of the options.
const (
	// DefaultRequestTimeout bounds a request that is not a long poll, and
	// is added to a long poll's hold as its watchdog.
	DefaultRequestTimeout = 15 * time.Second
	// DefaultDedupeWindow is how many message ids a Device remembers to
	// skip a message handed over again after a reconnect.
	DefaultDedupeWindow = 1000
)

// Client talks to one longpoll server. It is safe for concurrent use; it
// holds no connection of its own beyond its HTTP client's pool.
type Client struct {
	base           *url.URL
	http           *http.Client
	publishKey     string
	token          TokenSource
	backoff        Backoff
	pollTimeout    time.Duration // 0: the server's
	requestTimeout time.Duration
	dedupeWindow   int
	onRetry        func(RetryInfo)
}

// TokenSource returns the JWT that POST /connect sends as "Authorization:
// Bearer" to a server started with --connect-secret. It is called before
// every connect (and reconnect), so it can hand out a fresh, short-lived
// token; an error from it fails that connect.
type TokenSource func(ctx context.Context) (string, error)

// RetryInfo describes a failure that a Device is about to retry; see
// WithRetryHook.
type RetryInfo struct {
	// Err is the failure: an *Error, a network error, or a bad response.
	Err error
	// Wait is how long the device waits before the next try (0 when it
	// connects again at once).
	Wait time.Duration
	// Reconnect is true when the next try is a new POST /connect (the
	// server lost the session).
	Reconnect bool
	// Attempt counts the failures in a row, from 1.
	Attempt int
}

// Option configures a Client.
type Option func(*Client)

// WithPublishKey sets the publish key sent as "Authorization: Bearer" by
// the publisher calls (Push, PushBatch, Presence, Stats, Disconnect).
func WithPublishKey(key string) Option { return func(c *Client) { c.publishKey = key } }

// WithToken sets the source of the connect token for a server started
// with --connect-secret.
func WithToken(src TokenSource) Option { return func(c *Client) { c.token = src } }

// WithHTTPClient sets the HTTP client (for TLS settings or a proxy). Its
// Timeout must be 0 or longer than the longest poll hold plus the request
// timeout; the client sets a deadline on every request itself.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithBackoff sets the retry backoff of devices (see Backoff).
func WithBackoff(b Backoff) Option { return func(c *Client) { c.backoff = b } }

// WithPollTimeout sets how long the server may hold a device's poll (the
// timeout parameter of GET /data; the server caps it at its
// --max-poll-timeout). 0, the default, uses the server's --poll-timeout.
func WithPollTimeout(d time.Duration) Option { return func(c *Client) { c.pollTimeout = d } }

// WithRequestTimeout bounds each request that is not a long poll, and is
// the margin past a poll's hold after which the poll counts as a network
// failure. The default is DefaultRequestTimeout.
func WithRequestTimeout(d time.Duration) Option { return func(c *Client) { c.requestTimeout = d } }

// WithDedupeWindow sets how many message ids a Device remembers (default
// DefaultDedupeWindow). It should be at least the server's --max-mailbox,
// the most messages a new session can be handed again.
func WithDedupeWindow(n int) Option { return func(c *Client) { c.dedupeWindow = n } }

// WithRetryHook sets a function that a Device calls, from its Run
// goroutine, before each retry or reconnect: for logging, or to show "reconnecting".
func WithRetryHook(f func(RetryInfo)) Option { return func(c *Client) { c.onRetry = f } }

// defaultHTTP is the HTTP client of a Client without WithHTTPClient: no
// overall timeout (long polls), a few more idle connections per host than
// net/http's default so that a publisher's concurrent pushes reuse them.
var defaultHTTP = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t}
}()

// New returns a client of the server at baseURL ("http://127.0.0.1:8080",
// "https://push.example.com/longpoll/" behind a proxy's path prefix). It
// fails only when baseURL is not an absolute http or https URL.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("longpoll: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("longpoll: base URL %q: want http://host[:port] or https://host[:port]", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	c := &Client{
		base:           u,
		http:           defaultHTTP,
		backoff:        DefaultBackoff,
		requestTimeout: DefaultRequestTimeout,
		dedupeWindow:   DefaultDedupeWindow,
	}
	for _, o := range opts {
		o(c)
	}
	if c.requestTimeout <= 0 {
		c.requestTimeout = DefaultRequestTimeout
	}
	if c.dedupeWindow < 0 {
		c.dedupeWindow = 0
	}
	return c, nil
}

// URL returns the server's base URL as New took it (without a trailing
// slash).
func (c *Client) URL() string { return c.base.String() }

// request is one API call.
type request struct {
	method string
	path   string
	query  url.Values
	body   any    // encoded as JSON when not nil ([]byte: sent as is)
	auth   string // Authorization header value, if any
	// timeout bounds the whole exchange; 0 means the client's request timeout.
	timeout time.Duration
}

// do sends r and decodes a 2xx JSON body into out (when out is not nil and
// the status is not 204). It returns the status; a non-2xx status is an
// *Error.
func (c *Client) do(ctx context.Context, r request, out any) (int, error) {
	u := *c.base
	u.Path += r.path
	if r.query != nil {
		u.RawQuery = r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		b, ok := r.body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(r.body); err != nil {
				return 0, fmt.Errorf("longpoll: encoding the %s %s body: %w", r.method, r.path, err)
			}
		}
		body = bytes.NewReader(b)
	}
	timeout := r.timeout
	if timeout <= 0 {
		timeout = c.requestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return 0, fmt.Errorf("longpoll: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("longpoll: %s %s: %w", r.method, r.path, err)
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		return res.StatusCode, parseError(res.StatusCode, res.Header, b)
	}
	if out == nil || res.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxErrorBody))
		return res.StatusCode, nil
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, fmt.Errorf("longpoll: %s %s: reading the response: %w", r.method, r.path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return res.StatusCode, &badResponse{what: r.method + " " + r.path, err: err}
	}
	return res.StatusCode, nil
}

// badResponse is a 2xx response whose body could not be read as the API's
// JSON: a proxy or a server of another kind answered. Devices retry it.
type badResponse struct {
	what string
	err  error
}

func (e *badResponse) Error() string {
	return "longpoll: " + e.what + ": the response is not the API's JSON: " + e.err.Error()
}

func (e *badResponse) Unwrap() error { return e.err }

// publisherAuth is the Authorization header of the publisher calls.
func (c *Client) publisherAuth() string {
	if c.publishKey == "" {
		return ""
	}
	return "Bearer " + c.publishKey
}

// retryable reports whether a device should retry err: network errors,
// bad responses, and *Errors that are Retryable. A context's end, a
// closed device and a failed TokenSource are not.
func retryable(err error) bool {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	var te *tokenError
	return !errors.As(err, &te) && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrDeviceClosed)
}
