// Package testserver runs the real longpoll binary for tests: it builds
// ./cmd/longpoll once per test process (with the race detector), starts it
// on 127.0.0.1 with the flags a test gives, and can stop it (SIGTERM), kill
// it (SIGKILL) and start it again on the same address, so that a client's
// URL stays valid across a restart.
//
// Every wait is bounded: a server that does not log its address within
// StartTimeout, or does not exit within StopTimeout of a signal, fails the
// test (or returns an error from the functions without a testing.TB). The
// server's output is kept and shown when a test fails.
//
// A test package that uses it should call Main from its TestMain, which
// removes the built binary when the tests are done:
//
//	func TestMain(m *testing.M) { testserver.Main(m) }
package testserver

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the waits.
const (
	// BuildTimeout bounds building the binary.
	BuildTimeout = 5 * time.Minute
	// StartTimeout bounds the wait for a started server to log its address.
	StartTimeout = 30 * time.Second
	// StopTimeout bounds the wait for the process to exit after a signal.
	StopTimeout = 15 * time.Second
	// rebindTimeout bounds the retries of Restart while the old address is
	// still taken.
	rebindTimeout = 10 * time.Second
)

const modulePath = "github.com/longpoll/longpoll"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Main runs the tests of m, then kills every server still running (those
// Launch started for TestMain or examples, too), removes the binary that
// Build built, and exits with m's code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	launchedMu.Lock()
	all := launched
	launched = nil
	launchedMu.Unlock()
	for _, s := range all {
		s.Close()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// launched lists every server started, for Main to kill.
var (
	launchedMu sync.Mutex
	launched   []*Server
)

// Build builds the longpoll binary with -race into a temporary directory,
// once per process, and returns its path. Later calls return the same path
// (or the same error). The module is found by walking up from the working
// directory to the go.mod of github.com/longpoll/longpoll.
func Build() (string, error) {
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, err = os.MkdirTemp("", "longpoll-testserver"); err != nil {
			buildErr = err
			return
		}
		bin := filepath.Join(buildDir, "longpoll")
		cmd := exec.Command("go", "build", "-race", "-o", bin, "./cmd/longpoll")
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := runBounded(cmd, BuildTimeout); err != nil {
			buildErr = fmt.Errorf("building longpoll: %v\n%s", err, out.String())
			return
		}
		buildBin = bin
	})
	return buildBin, buildErr
}

// Binary is Build for a test: it fails tb when the build fails.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin, err := Build()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// runBounded runs cmd and kills it if it has not finished within d.
func runBounded(cmd *exec.Cmd, d time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not finish within %v", strings.Join(cmd.Args, " "), d)
	}
}

// moduleRoot finds the directory of longpoll's go.mod above the working
// directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && regexp.MustCompile(`(?m)^module\s+`+regexp.QuoteMeta(modulePath)+`\s*$`).Match(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// Server is a running (or stopped) longpoll process.
type Server struct {
	// URL is the server's base URL, "http://127.0.0.1:PORT"; it stays the
	// same across Restart.
	URL string
	// Addr is the server's address, "127.0.0.1:PORT".
	Addr string

	args []string // without --addr
	env  []string // added to the environment
	logs *Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd's exit error, once done is closed
}

// Start starts the binary (building it first if needed) with args on a
// free port of 127.0.0.1 and returns once it logs its address. The server
// is killed when the test ends, and its output is logged if the test
// failed. An --addr in args is ignored.
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return StartEnv(tb, nil, args...)
}

// StartEnv is Start with env ("KEY=value") added to the process's
// environment, such as LONGPOLL_CONNECT_SECRET.
func StartEnv(tb testing.TB, env []string, args ...string) *Server {
	tb.Helper()
	s, err := Launch(env, args...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		if tb.Failed() {
			tb.Logf("longpoll output:\n%s", s.Logs())
		}
	})
	return s
}

// Launch is Start without a testing.TB, for TestMain and examples: the
// caller should Close the server; Main kills it at the latest. A failure to build or start is returned
// with the server's output.
func Launch(env []string, args ...string) (*Server, error) {
	if _, err := Build(); err != nil {
		return nil, err
	}
	s := &Server{args: withoutAddr(args), env: env, logs: &Buffer{}}
	if err := s.start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	launchedMu.Lock()
	launched = append(launched, s)
	launchedMu.Unlock()
	return s, nil
}

// withoutAddr drops --addr (and its value) from args.
func withoutAddr(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--addr" || a == "-addr":
			i++
		case strings.HasPrefix(a, "--addr=") || strings.HasPrefix(a, "-addr="):
		default:
			out = append(out, a)
		}
	}
	return out
}

// listening matches the start line of the text and the JSON log format.
var listening = regexp.MustCompile(`msg="longpoll listening" addr=(127\.0\.0\.1:\d+)|"msg":"longpoll listening","addr":"(127\.0\.0\.1:\d+)"`)

// start runs the process on addr and waits for its start line.
func (s *Server) start(addr string) error {
	cmd := exec.Command(buildBin, append([]string{"--addr", addr}, s.args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = s.logs
	mark := s.logs.Len()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1] + m[2]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	select {
	case a := <-found:
		s.Addr, s.URL = a, "http://"+a
		return nil
	case <-done:
		return fmt.Errorf("longpoll exited before listening (%v):\n%s", s.exitErr(), s.logs.From(mark))
	case <-time.After(StartTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("longpoll did not log its address within %v:\n%s", StartTimeout, s.logs.From(mark))
	}
}

func (s *Server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// signal sends sig and waits (bounded) for the process to exit. It returns
// the exit error (nil for exit status 0); a process that has already
// exited returns its exit error again.
func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("testserver: not started")
	}
	select {
	case <-done:
		return s.exitErr()
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return s.exitErr()
	case <-time.After(StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("longpoll did not exit within %v of %v", StopTimeout, sig)
	}
}

// Stop sends SIGTERM (a graceful shutdown: parked polls are answered 204)
// and waits for the process to exit. It returns nil for exit status 0.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM) }

// Kill sends SIGKILL (a crash: connections are cut, nothing is answered)
// and waits for the process to exit. The error of a killed process is
// expected and not returned.
func (s *Server) Kill() {
	_ = s.signal(syscall.SIGKILL)
}

// Running reports whether the process has not exited.
func (s *Server) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Restart starts the binary again with the same arguments on the same
// address, after stopping it with SIGTERM if it is still running. While
// the address is still taken it retries, for a bounded time.
func (s *Server) Restart() error {
	if s.Running() {
		if err := s.Stop(); err != nil {
			return fmt.Errorf("stopping before a restart: %w", err)
		}
	}
	deadline := time.Now().Add(rebindTimeout)
	for {
		mark := s.logs.Len()
		err := s.start(s.Addr)
		if err == nil {
			return nil
		}
		if !strings.Contains(s.logs.From(mark), "address already in use") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // interval of a bounded retry, not synchronisation
	}
}

// Close kills the process if it is still running. It is safe to call more
// than once.
func (s *Server) Close() {
	if s.Running() {
		s.Kill()
	}
}

// Logs returns everything the process (and its earlier runs) printed.
func (s *Server) Logs() string { return s.logs.String() }

// Args returns the flags the server was started with (without --addr).
func (s *Server) Args() []string { return slices.Clone(s.args) }

// WaitFor polls cond every few milliseconds until it is true, and fails tb
// if it is not within timeout. It is a bounded wait, not a sleep: use it
// to wait for a state that can only be observed by asking.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval of a bounded wait
	}
}

// Buffer is a bytes.Buffer safe for concurrent use: a place for the output
// of a process or goroutine that a test reads while it is written.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Len returns how many bytes were written.
func (l *Buffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// String returns everything written.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// From returns what was written from offset n on.
func (l *Buffer) From(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b.Bytes()[n:])
}

// SignHS256 returns a JWT signed HS256 with secret and carrying claims, as
// a backend issues for a server started with --connect-secret (sub, exp,
// and optionally dev and topics).
func SignHS256(secret string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	body, err := json.Marshal(claims)
	if err != nil {
		panic(err) // claims of a test: plain values
	}
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}
