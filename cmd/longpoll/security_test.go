package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// writeCert writes a fresh self-signed certificate for 127.0.0.1 and its
// key to dir and returns the two paths and a pool that trusts it.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSHTTP2RoundTrip serves HTTPS from the binary and runs a connect,
// several parked polls and a push over HTTP/2: every request shares one
// connection.
func TestTLSHTTP2RoundTrip(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir(), "longpoll-test")
	s := start(t, "--heartbeat-interval", "0", "--tls-cert", certFile, "--tls-key", keyFile)
	base := strings.Replace(s.base, "http://", "https://", 1)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	tc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	do := func(method, path, body string) (*http.Response, []byte) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			mu.Lock()
			conns[ci.Conn] = true
			mu.Unlock()
		}}
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := tc.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return nil, nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.ProtoMajor != 2 {
			t.Errorf("%s %s over %s, want HTTP/2", method, path, res.Proto)
		}
		return res, b
	}

	const n = 8
	ids := make([]string, n)
	for i := range ids {
		res, b := do("POST", "/connect", fmt.Sprintf(`{"deviceId":"tls-%d","topics":["t"]}`, i))
		if res == nil || res.StatusCode != 201 {
			t.Fatalf("connect over TLS: %v %s", res, b)
		}
		var cr struct{ SessionID string }
		_ = json.Unmarshal(b, &cr)
		ids[i] = cr.SessionID
	}
	got := make(chan string, n)
	for _, id := range ids {
		go func() {
			res, b := do("GET", "/data?timeout=20&sessionId="+id, "")
			if res == nil || res.StatusCode != 200 {
				got <- fmt.Sprintf("poll: %v %s", res, b)
				return
			}
			got <- string(b)
		}()
	}
	waitFor(t, "8 parked polls", func() bool {
		_, b := do("GET", "/stats", "")
		var st struct{ Parked int }
		_ = json.Unmarshal(b, &st)
		return st.Parked == n
	})
	if res, b := do("POST", "/push", `{"to":{"topic":"t"},"data":"over h2"}`); res == nil || res.StatusCode != 202 {
		t.Fatalf("push: %v %s", res, b)
	}
	for range n {
		select {
		case b := <-got:
			if !strings.Contains(b, `"over h2"`) {
				t.Errorf("poll answer %s", b)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("parked poll not answered")
		}
	}
	mu.Lock()
	if len(conns) != 1 {
		t.Errorf("%d connections, want all requests on one HTTP/2 connection", len(conns))
	}
	mu.Unlock()

	// Plain HTTP on the TLS port is refused, not served.
	if res, err := client.Get(s.base + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d", res.StatusCode)
		}
	}
	if _, err := s.stop(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func TestTLSBadFilesFailAtStart(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := writeCert(t, dir, "a")
	_, otherKey, _ := writeCert(t, dir, "b")
	for _, args := range [][]string{
		{"--tls-cert", filepath.Join(dir, "missing.crt"), "--tls-key", otherKey},
		{"--tls-cert", certFile, "--tls-key", otherKey}, // key of another certificate
		{"--tls-cert", certFile},
	} {
		out, err := exec.Command(binary, append([]string{"--addr", "127.0.0.1:0"}, args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "tls") {
			t.Errorf("%v: exit %v, output %s", args, err, out)
		}
	}
}

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "srv")
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	first, _ := r.GetCertificate(nil)

	// a renewal: new files with a later modification time
	newCert, newKey, _ := writeCert(t, t.TempDir(), "srv")
	for src, dst := range map[string]string{newCert: certFile, newKey: keyFile} {
		b, _ := os.ReadFile(src)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Minute)
		_ = os.Chtimes(dst, later, later)
	}
	if c, _ := r.GetCertificate(nil); c != first {
		t.Error("reloaded before the check interval")
	}
	now = now.Add(certCheckInterval)
	second, _ := r.GetCertificate(nil)
	if second == first || string(second.Certificate[0]) == string(first.Certificate[0]) {
		t.Error("renewed certificate not picked up")
	}
	// a broken renewal keeps the previous certificate
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Minute)
	_ = os.Chtimes(keyFile, later, later)
	now = now.Add(certCheckInterval)
	if c, _ := r.GetCertificate(nil); c != second {
		t.Error("a broken key pair replaced the certificate")
	}
}

const e2eSecret = "e2e-secret-0123456789abcdef-0123456789ab"

func e2eToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(e2eSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// doAuth is server.do with an Authorization header.
func (s *server) doAuth(method, path, ctype, body, authz string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	res, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, b, res.Header}
}

func wantCode(t *testing.T, r response, status int, code string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if r.status != status || json.Unmarshal(r.body, &body) != nil || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
}

// TestClientAuthEndToEnd: the binary with a connect secret (from the
// environment) and a publish key.
func TestClientAuthEndToEnd(t *testing.T) {
	t.Setenv("LONGPOLL_CONNECT_SECRET", e2eSecret) // the child inherits it
	s := start(t, "--heartbeat-interval", "0", "--publish-key", "pk-0123456789abcdef")

	wantCode(t, s.do("POST", "/connect", "application/json", `{"deviceId":"lamp"}`), 401, "unauthorized")
	wantCode(t, s.doAuth("POST", "/connect", "application/json", `{"deviceId":"lamp"}`, "Bearer "+e2eToken(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})), 401, "unauthorized")
	wantCode(t, s.doAuth("POST", "/connect", "application/json", `{"deviceId":"lamp","topics":["office"]}`, "Bearer "+e2eToken(t, jwt.MapClaims{"topics": []string{"home/*"}})), 403, "forbidden")
	r := s.doAuth("POST", "/connect", "application/json", `{"deviceId":"lamp","topics":["home/kitchen"]}`, "Bearer "+e2eToken(t, jwt.MapClaims{"dev": "lamp", "topics": []string{"home/*"}}))
	var sess struct{ SessionID, UserID string }
	r.json(t, &sess)
	if r.status != 201 || sess.UserID != "alice" {
		t.Fatalf("connect: %d %s", r.status, r.body)
	}
	// the session ID is the credential from now on
	wantCode(t, s.do("POST", "/send?sessionId="+sess.SessionID, "application/json", `{"to":{"topic":"office"},"data":1}`), 403, "forbidden")
	if r := s.do("POST", "/send?sessionId="+sess.SessionID, "application/json", `{"to":{"topic":"home/kitchen"},"data":1}`); r.status != 202 {
		t.Errorf("send in claim: %d %s", r.status, r.body)
	}
	// admin disconnect needs the publish key, and ends the parked poll 410
	status := make(chan int, 1)
	go func() {
		st, _ := s.poll(sess.SessionID, "&cursor=1&timeout=20")
		status <- st
	}()
	waitFor(t, "poll parked", func() bool {
		r := s.doAuth("GET", "/stats", "", "", "Bearer pk-0123456789abcdef")
		var st struct{ Parked int }
		_ = json.Unmarshal(r.body, &st)
		return st.Parked == 1
	})
	wantCode(t, s.do("POST", "/disconnect", "application/json", `{"userId":"alice"}`), 401, "unauthorized")
	if r := s.doAuth("POST", "/disconnect", "application/json", `{"userId":"alice"}`, "Bearer pk-0123456789abcdef"); r.status != 200 || !strings.Contains(string(r.body), `"disconnected":1`) {
		t.Errorf("disconnect: %d %s", r.status, r.body)
	}
	select {
	case st := <-status:
		if st != http.StatusGone {
			t.Errorf("parked poll after admin disconnect: %d, want 410", st)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("parked poll not ended")
	}
}

// TestHeaderLimitsOverTheWire: between --max-header-bytes and twice it the
// API answers 431 with its JSON body; beyond, net/http answers 431 before
// reading it all. Both leave the server serving.
func TestHeaderLimitsOverTheWire(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0", "--max-header-bytes", "4096")
	get := func(pad int) (int, string) {
		req, _ := http.NewRequest("GET", s.base+"/healthz", nil)
		req.Header.Set("X-Pad", strings.Repeat("p", pad))
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request with %d bytes of header: %v", pad, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, _ := get(3000); st != 200 {
		t.Errorf("3000 bytes: %d", st)
	}
	if st, b := get(6000); st != 431 || !strings.Contains(b, `"header_too_large"`) {
		t.Errorf("6000 bytes: %d %s", st, b)
	}
	if st, _ := get(64 << 10); st != 431 {
		t.Errorf("64 KiB: %d", st)
	}
	if st, _ := get(10); st != 200 {
		t.Errorf("afterwards: %d", st)
	}
}

// TestSlowHeadersAreCut: a client that sends its headers slowly is cut off
// after --read-header-timeout.
func TestSlowHeadersAreCut(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0", "--read-header-timeout", "500ms")
	addr := strings.TrimPrefix(s.base, "http://")
	began := time.Now()
	if err := slowloris(addr, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 400*time.Millisecond {
		t.Errorf("cut after %v, before the timeout", took)
	}
	if r := s.do("GET", "/healthz", "", ""); r.status != 200 {
		t.Errorf("healthz afterwards: %d", r.status)
	}
}

// slowloris opens a connection and sends a request's headers one short
// line every 50 ms, never finishing them. It returns nil once the server
// closes the connection, an error if it has not within bound.
func slowloris(addr string, bound time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = conn.SetReadDeadline(time.Now().Add(bound))
		_, _ = io.Copy(io.Discard, bufio.NewReader(conn)) // returns when the server closes
	}()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		return nil
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(bound)
	for i := 0; ; i++ {
		select {
		case <-closed:
			return nil
		case <-deadline:
			return fmt.Errorf("slow client still connected after %v", bound)
		case <-tick.C:
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: y\r\n", i); err != nil {
				<-closed
				return nil
			}
		}
	}
}

// TestLimitsEndToEnd: the rate limit, the poll cap per address, the session
// cap and the network filter of the binary, from 127.0.0.1.
func TestLimitsEndToEnd(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0", "--connect-rate", "0.01", "--connect-burst", "3",
		"--max-parked-per-ip", "2", "--max-sessions", "3", "--cors-origins", "https://app.example")

	var ids []string
	for i := range 3 {
		ids = append(ids, s.connect(fmt.Sprintf(`{"deviceId":"d%d"}`, i))["sessionId"].(string))
	}
	r := s.do("POST", "/connect", "application/json", `{"deviceId":"d9"}`)
	wantCode(t, r, 429, "rate_limited")
	if r.header.Get("Retry-After") != "100" {
		t.Errorf("Retry-After %q, want 100", r.header.Get("Retry-After"))
	}

	// two polls park; a third from the same address is refused
	answered := make(chan int, 2)
	for _, id := range ids[:2] {
		go func() {
			st, _ := s.poll(id, "&timeout=20")
			answered <- st
		}()
	}
	waitFor(t, "two parked polls", func() bool {
		r := s.do("GET", "/stats", "", "")
		var st struct{ Parked int }
		_ = json.Unmarshal(r.body, &st)
		return st.Parked == 2
	})
	r = s.do("GET", "/data?timeout=0&sessionId="+ids[2], "", "")
	wantCode(t, r, 429, "rate_limited")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if r := s.push(`{"to":{"sessionId":"` + ids[0] + `"},"data":1}`); r.status != 202 {
		t.Fatalf("push: %d", r.status)
	}
	if st := <-answered; st != 200 {
		t.Fatalf("parked poll: %d", st)
	}
	waitFor(t, "a free poll slot", func() bool {
		st, _ := s.poll(ids[2], "&timeout=0")
		return st == http.StatusNoContent
	})

	// CORS preflight over the wire
	req, _ := http.NewRequest("OPTIONS", s.base+"/connect", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	if _, err := s.stop(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if st := <-answered; st != http.StatusNoContent {
		t.Errorf("the other parked poll at shutdown: %d", st)
	}
}

func TestSessionCapAndNetworkFilterEndToEnd(t *testing.T) {
	s := start(t, "--heartbeat-interval", "0", "--max-sessions", "1")
	s.connect(`{"deviceId":"one"}`)
	wantCode(t, s.do("POST", "/connect", "application/json", `{"deviceId":"two"}`), 503, "unavailable")
	s.connect(`{"deviceId":"one"}`) // a replacement is always allowed

	f := start(t, "--heartbeat-interval", "0", "--deny-cidr", "127.0.0.0/8")
	wantCode(t, f.do("POST", "/connect", "application/json", `{"deviceId":"d"}`), 403, "forbidden")
	wantCode(t, f.do("GET", "/data?sessionId=x", "", ""), 403, "forbidden")
	if r := f.do("GET", "/healthz", "", ""); r.status != 200 {
		t.Errorf("healthz is not filtered: %d", r.status)
	}
	a := start(t, "--heartbeat-interval", "0", "--allow-cidr", "10.0.0.0/8,192.0.2.0/24")
	wantCode(t, a.do("POST", "/connect", "application/json", `{"deviceId":"d"}`), 403, "forbidden")
}
