package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/client"
	"github.com/longpoll/longpoll/internal/redistest"
	"github.com/longpoll/longpoll/internal/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// findNginx returns the nginx binary, or skips the test (fails it in CI,
// where scripts/test.sh installs nginx-light first).
func findNginx(t *testing.T) string {
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed; scripts/test.sh installs Debian's nginx-light when run as root")
	}
	t.Skip("nginx is not installed: apt-get install nginx-light (scripts/test.sh does it as root), then run again")
	return ""
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "push.example.com"},
		DNSNames: []string{"push.example.com"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	parsed, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(parsed)
	return cert, key, pool
}

// replaceOnce replaces old with new in s, failing the test unless old
// occurs exactly once: the shipped file must keep the shape this test
// changes.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("deploy/nginx.conf: %q occurs %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// proxyDirective returns the value of directive in longpoll_proxy.conf.
func proxyDirective(t *testing.T, conf, directive string) string {
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(directive) + `\s+([^;]+);`).FindStringSubmatch(conf)
	if m == nil {
		t.Fatalf("longpoll_proxy.conf has no %s", directive)
	}
	return strings.TrimSpace(m[1])
}

// TestNginxInFront runs deploy/nginx.conf (its listen addresses, upstream
// address, certificate and include paths changed for the test) in a real
// nginx in front of the binary, and polls, pushes and checks the client
// address through it.
func TestNginxInFront(t *testing.T) {
	nginx := findNginx(t)
	const key = "pk-0123456789abcdef-nginx"

	// What keeps a long poll open: the read timeout must outlast longpoll's
	// longest hold (--max-poll-timeout, 120 s by default), and answers pass
	// unbuffered. (Waiting 120 s here would make the suite slow; the
	// polls below are held, and answered, through nginx.)
	proxyConf, err := os.ReadFile("longpoll_proxy.conf")
	if err != nil {
		t.Fatal(err)
	}
	pc := string(proxyConf)
	if d, err := time.ParseDuration(proxyDirective(t, pc, "proxy_read_timeout")); err != nil || d <= 120*time.Second {
		t.Errorf("proxy_read_timeout %s: want more than longpoll's --max-poll-timeout of 120s", proxyDirective(t, pc, "proxy_read_timeout"))
	}
	for directive, want := range map[string]string{"proxy_buffering": "off", "proxy_http_version": "1.1", "proxy_set_header X-Forwarded-For": "$remote_addr"} {
		if got := proxyDirective(t, pc, directive); got != want {
			t.Errorf("%s %s, want %s", directive, got, want)
		}
	}

	// longpoll behind it: the proxy is trusted for X-Forwarded-For, and
	// 127.0.0.2 is a denied network, so the address nginx passes decides.
	lp := testserver.Start(t, "--heartbeat-interval", "0", "--publish-key", key, "--trust-proxy", "127.0.0.1",
		"--deny-cidr", "127.0.0.2/32")

	site := runSite(t, nginx, lp.Addr)
	tlsClient, front, httpPort, pool, accessLog := site.client, site.front, site.httpPort, site.pool, site.accessLog
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// plain HTTP: health checks pass, the rest is redirected to HTTPS
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/healthz": 200, "/data": 308} {
		res, err := noRedirect.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("http %s: %d, want %d", path, res.StatusCode, want)
		}
	}

	// a device and a publisher through nginx: a parked poll answered by
	// pushes, delivered in order
	c, err := client.New(front, client.WithHTTPClient(tlsClient), client.WithPublishKey(key))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "behind-nginx", UserID: "olga"})
	if err != nil {
		t.Fatal(err)
	}
	devSID := dev.Session().ID
	got, stop := run(ctx, dev)
	testserver.WaitFor(t, "the device's poll parked behind nginx", 30*time.Second, func() bool {
		st, err := c.Stats(ctx)
		return err == nil && st.Parked == 1
	})
	// a hold that ends empty comes back through nginx as 204 when it ends
	other, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "held"})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	res, err := tlsClient.Get(front + "/data?timeout=1&sessionId=" + other.Session().ID)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if held := time.Since(began); res.StatusCode != http.StatusNoContent || held < 750*time.Millisecond {
		t.Fatalf("a 1 s poll through nginx: %d after %v, want 204 after the hold (80-100 %% of 1 s)", res.StatusCode, held)
	}
	for i := 1; i <= 5; i++ {
		if _, err := c.Push(ctx, client.Push{To: client.Target{UserID: "olga"}, Data: i}); err != nil {
			t.Fatalf("push %d through nginx: %v", i, err)
		}
	}
	for i := 1; i <= 5; i++ {
		select {
		case d := <-got:
			if d != strconv.Itoa(i) {
				t.Fatalf("got %s, want %d", d, i)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d did not come through nginx", i)
		}
	}
	noKey, _ := client.New(front, client.WithHTTPClient(tlsClient))
	if _, err := noKey.Stats(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("stats through nginx without the key: %v, want unauthorized", err)
	}
	stop()
	if err := dev.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}

	// the client address longpoll sees is the one nginx saw: from 127.0.0.2
	// (a denied network) refused, from 127.0.0.1 allowed even when it
	// claims to be 127.0.0.2 in its own X-Forwarded-For
	from := func(local string, spoof string) int {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "push.example.com"}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", front+"/connect", strings.NewReader(`{"deviceId":"addr-`+strings.ReplaceAll(local, ".", "-")+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if spoof != "" {
			req.Header.Set("X-Forwarded-For", spoof)
		}
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("connect from %s: %v", local, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := from("127.0.0.2", ""); st != http.StatusForbidden {
		t.Errorf("connect from 127.0.0.2 (denied) through nginx: %d, want 403", st)
	}
	if st := from("127.0.0.1", "127.0.0.2"); st != http.StatusCreated {
		t.Errorf("connect from 127.0.0.1 claiming 127.0.0.2: %d, want 201 (a client's X-Forwarded-For must not be believed)", st)
	}

	// the access log names each request's path but never its query string:
	// session ids are credentials (the polls above were logged when their
	// answers were sent, before nginx served the requests that followed)
	logged, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), `"GET /data HTTP/`) {
		t.Errorf("the access log has no poll:\n%s", logged)
	}
	for _, secret := range []string{"sessionId", other.Session().ID, devSID} {
		if strings.Contains(string(logged), secret) {
			t.Errorf("the access log holds %q:\n%s", secret, logged)
		}
	}
}

// nginxSite is deploy/nginx.conf running in a real nginx.
type nginxSite struct {
	client    *http.Client // trusts its certificate
	front     string       // its HTTPS base URL
	httpPort  int
	pool      *x509.CertPool
	accessLog string
}

// runSite runs deploy/nginx.conf in nginx (its listen addresses, upstream
// servers, certificate and include paths changed for the test) in front
// of upstreams until t ends.
func runSite(t *testing.T, nginx string, upstreams ...string) nginxSite {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // nginx's workers may run as another user
	cert, certKey, pool := selfSigned(t, dir)
	httpPort, httpsPort := freePort(t), freePort(t)
	site, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	include, _ := filepath.Abs("longpoll_proxy.conf")
	s := string(site)
	servers := ""
	for _, u := range upstreams {
		servers += "server " + u + ";\n    "
	}
	s = replaceOnce(t, s, "server 127.0.0.1:8080;", servers)
	s = replaceOnce(t, s, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort))
	s = replaceOnce(t, s, "listen [::]:80;", "")
	s = replaceOnce(t, s, "listen 443 ssl http2;", fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", httpsPort))
	s = replaceOnce(t, s, "listen [::]:443 ssl http2;", "")
	s = replaceOnce(t, s, "/etc/letsencrypt/live/push.example.com/fullchain.pem", cert)
	s = replaceOnce(t, s, "/etc/letsencrypt/live/push.example.com/privkey.pem", certKey)
	s = strings.ReplaceAll(s, "/etc/nginx/longpoll_proxy.conf", include)
	accessLog := filepath.Join(dir, "longpoll.access.log")
	if n := strings.Count(s, "access_log /var/log/nginx/longpoll.access.log longpoll_noquery;"); n != 2 {
		t.Fatalf("deploy/nginx.conf: %d access_log lines with the longpoll_noquery format, want one in each server", n)
	}
	s = strings.ReplaceAll(s, "/var/log/nginx/longpoll.access.log", accessLog)
	os.WriteFile(filepath.Join(dir, "longpoll.conf"), []byte(s), 0o644)
	main := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/longpoll.conf;
}
`, dir)
	mainConf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(mainConf, []byte(main), 0o644)

	if out, err := exec.Command(nginx, "-t", "-p", dir, "-c", mainConf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", mainConf, "-g", "daemon off;")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // nginx: fast shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out, log)
		}
	})
	testserver.WaitFor(t, "nginx to listen", 30*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, out)
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpsPort))
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	return nginxSite{
		client:    &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "push.example.com"}, ForceAttemptHTTP2: true}},
		front:     fmt.Sprintf("https://127.0.0.1:%d", httpsPort),
		httpPort:  httpPort,
		pool:      pool,
		accessLog: accessLog,
	}
}

// TestNginxInFrontOfACluster runs deploy/nginx.conf with three nodes of
// one Redis as its upstream servers, round robin and nothing sticky: a
// device's polls and the publisher's pushes land on any node, and every
// message arrives once, in order.
func TestNginxInFrontOfACluster(t *testing.T) {
	nginx := findNginx(t)
	const key = "pk-0123456789abcdef-nginx"
	rs := redistest.Start(t)
	var addrs []string
	var nodes []*testserver.Server
	for range 3 {
		n := testserver.Start(t, "--heartbeat-interval", "0", "--publish-key", key, "--trust-proxy", "127.0.0.1", "--redis-url", rs.URL())
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}
	site := runSite(t, nginx, addrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.New(site.front, client.WithHTTPClient(site.client), client.WithPublishKey(key))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.Connect(ctx, client.ConnectRequest{DeviceID: "behind-the-balancer"})
	if err != nil {
		t.Fatal(err)
	}
	got, stop := run(ctx, dev)
	const n = 30
	for i := 1; i <= n; i++ {
		if _, err := c.Push(ctx, client.Push{To: client.Target{DeviceID: "behind-the-balancer"}, Data: i}); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		select {
		case d := <-got:
			if d != strconv.Itoa(i) {
				t.Fatalf("got %s, want %d", d, i)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d did not come through the balancer", i)
		}
	}
	stop()
	// Each node answered some of the polls: nothing kept the device on one.
	for i, node := range nodes {
		req, _ := http.NewRequest(http.MethodGet, node.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		m := regexp.MustCompile(`(?m)^longpoll_polls_total\{outcome="messages"\} (\d+)`).FindSubmatch(b)
		if m == nil || string(m[1]) == "0" {
			t.Errorf("node %d answered no poll with messages: %s", i, m)
		}
	}
}

// run runs dev (client.Device.Run) until stop, which returns once it has
// returned; got yields each message's data.
func run(ctx context.Context, dev *client.Device) (got <-chan string, stop func()) {
	ch := make(chan string, 64)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- dev.Run(runCtx, func(_ context.Context, m client.Message) error {
			ch <- string(m.Data)
			return nil
		})
	}()
	return ch, func() { cancel(); <-done }
}
