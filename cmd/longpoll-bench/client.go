package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rawClient is a minimal HTTP/1.1 client over one connection, owned by one
// goroutine (a poller, a publisher, a setup worker). It exists because
// net/http's Transport costs the load generator about 60 µs of CPU per
// request, on a 2-core box whose other core runs the server under test: the
// tool, not the server, would set the pace. One persistent connection per
// poller is also what real devices do.
//
// A rawClient is bound to a context: when it ends, the connection is closed,
// which unblocks a parked poll at once. Requests are bounded by timeout.
type rawClient struct {
	addr    string // host:port to dial
	host    string // Host header
	prefix  string // path prefix of the base URL
	dialer  *sourceDialer
	fresh   bool          // a new connection for every request (connect storm)
	timeout time.Duration // bound on one request
	onWrote func()        // called after a request is written (poller accounting)

	mu   sync.Mutex // guards conn and dead against the context's AfterFunc
	conn net.Conn
	dead bool
	br   *bufio.Reader
	bw   *bufio.Writer
	stop func() bool
}

// respHeader carries the response headers a target needs.
type respHeader struct {
	lastModified, etag string
}

// clientFactory makes rawClients for one server.
type clientFactory struct {
	addr, host, prefix string
	dialer             *sourceDialer
	timeout            time.Duration
}

func newClientFactory(base string, d *sourceDialer, timeout time.Duration) (*clientFactory, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &clientFactory{addr: addr, host: u.Host, prefix: strings.TrimRight(u.Path, "/"), dialer: d, timeout: timeout}, nil
}

// client returns a client that lives until ctx ends or Close is called.
func (f *clientFactory) client(ctx context.Context, fresh bool) *rawClient {
	rc := &rawClient{addr: f.addr, host: f.host, prefix: f.prefix, dialer: f.dialer, fresh: fresh, timeout: f.timeout}
	rc.stop = context.AfterFunc(ctx, rc.kill)
	return rc
}

func (rc *rawClient) kill() {
	rc.mu.Lock()
	rc.dead = true
	if rc.conn != nil {
		rc.conn.Close()
		rc.conn = nil
	}
	rc.mu.Unlock()
}

// Close releases the connection.
func (rc *rawClient) Close() {
	rc.stop()
	rc.kill()
}

func (rc *rawClient) dropConn() {
	rc.mu.Lock()
	if rc.conn != nil {
		rc.conn.Close()
		rc.conn = nil
	}
	rc.mu.Unlock()
}

var errClientClosed = errors.New("client closed")

// do sends one request and reads the whole response. A GET on a re-used
// connection that the server had closed is retried once on a new one.
func (rc *rawClient) do(ctx context.Context, method, path string, body []byte, hdr map[string]string) (int, []byte, respHeader, error) {
	for attempt := 0; ; attempt++ {
		reused, err := rc.ensureConn(ctx)
		if err != nil {
			return 0, nil, respHeader{}, err
		}
		st, b, h, got, err := rc.roundTrip(method, path, body, hdr)
		if err == nil {
			return st, b, h, nil
		}
		rc.dropConn()
		if ctx.Err() != nil {
			return 0, nil, respHeader{}, ctx.Err()
		}
		if attempt == 0 && reused && !got && method == "GET" {
			continue
		}
		return 0, nil, respHeader{}, err
	}
}

func (rc *rawClient) ensureConn(ctx context.Context) (reused bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	rc.mu.Lock()
	if rc.dead {
		rc.mu.Unlock()
		return false, errClientClosed
	}
	if rc.conn != nil {
		rc.mu.Unlock()
		return true, nil
	}
	rc.mu.Unlock()
	conn, err := rc.dialer.DialContext(ctx, "tcp", rc.addr)
	if err != nil {
		return false, err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.dead {
		conn.Close()
		return false, errClientClosed
	}
	rc.conn = conn
	if rc.br == nil {
		rc.br = bufio.NewReaderSize(conn, 4096)
		rc.bw = bufio.NewWriterSize(conn, 2048)
	} else {
		rc.br.Reset(conn)
		rc.bw.Reset(conn)
	}
	return false, nil
}

// roundTrip writes the request and reads the response on the current
// connection. got reports whether any response byte arrived.
func (rc *rawClient) roundTrip(method, path string, body []byte, hdr map[string]string) (status int, b []byte, h respHeader, got bool, err error) {
	rc.mu.Lock()
	conn := rc.conn
	rc.mu.Unlock()
	if conn == nil {
		return 0, nil, h, false, errClientClosed
	}
	if err := conn.SetDeadline(time.Now().Add(rc.timeout)); err != nil {
		return 0, nil, h, false, err
	}
	w := rc.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(rc.prefix)
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(rc.host)
	w.WriteString("\r\nUser-Agent: longpoll-bench\r\n")
	if rc.fresh {
		w.WriteString("Connection: close\r\n")
	}
	for k, v := range hdr {
		w.WriteString(k)
		w.WriteString(": ")
		w.WriteString(v)
		w.WriteString("\r\n")
	}
	if body != nil {
		w.WriteString("Content-Type: application/json\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, nil, h, false, err
	}
	if rc.onWrote != nil {
		rc.onWrote()
	}
	status, b, h, keep, got, err := readResponse(rc.br, method)
	if err != nil {
		return 0, nil, h, got, err
	}
	if !keep || rc.fresh {
		rc.dropConn()
	}
	return status, b, h, true, nil
}

// readResponse reads one HTTP/1.x response: Content-Length, chunked, or
// until close.
func readResponse(br *bufio.Reader, method string) (status int, body []byte, h respHeader, keep, got bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, h, false, len(line) > 0, err
	}
	got = true
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, h, false, got, fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1'
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, h, false, got, fmt.Errorf("bad status line %q", line)
	}
	cl, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, nil, h, false, got, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if cl, err = strconv.Atoi(string(v)); err != nil || cl < 0 {
				return 0, nil, h, false, got, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(v, []byte("keep-alive")) {
				keep = true
			}
		case bytes.EqualFold(k, []byte("Last-Modified")):
			h.lastModified = string(v)
		case bytes.EqualFold(k, []byte("Etag")):
			h.etag = string(v)
		}
	}
	switch {
	case method == "HEAD" || status/100 == 1 || status == 204 || status == 304:
		return status, nil, h, keep, got, nil
	case chunked:
		body, err = readChunked(br)
	case cl >= 0:
		body = make([]byte, cl)
		_, err = io.ReadFull(br, body)
	default:
		body, err = io.ReadAll(io.LimitReader(br, 64<<20))
		keep = false
	}
	return status, body, h, keep, got, err
}

func readChunked(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sz, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte{';'})
		n, err := strconv.ParseUint(string(bytes.TrimSpace(sz)), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers
				line, err = br.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return out, nil
				}
			}
		}
		if len(out)+int(n) > 64<<20 {
			return nil, errors.New("body too large")
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return nil, err
		}
		if _, err := br.Discard(2); err != nil { // CRLF after the chunk
			return nil, err
		}
	}
}
