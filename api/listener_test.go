package api_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll/api"
)

// flakyListener fails its first Accept with EMFILE, as the kernel does when
// the process is out of file descriptors: a net.Error that is Temporary but
// not a Timeout. net/http's Serve sleeps and calls Accept again.
type flakyListener struct {
	net.Listener
	failed atomic.Bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestListenerSurvivesTemporaryAcceptError(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newParkServerOn(t, api.Config{}, &flakyListener{Listener: inner})
	c, err := net.DialTimeout("tcp", p.addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second)) // Serve's retry backoff is 5ms
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	n, err := c.Read(b)
	if !strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
		var ne net.Error
		t.Fatalf("after one EMFILE from accept the server serves no new connection: read %q, %v (timeout %v)", b[:n], err, errors.As(err, &ne) && ne.Timeout())
	}
}
