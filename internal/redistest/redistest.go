// Package redistest starts real redis-server processes on loopback ports
// for tests: one server, or a Redis Cluster of three masters. Without a
// redis-server binary a test is skipped, unless LONGPOLL_REQUIRE_REDIS is
// set (the test command sets it after installing Redis), when it fails.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/testwait"
)

// Server is one redis-server process.
type Server struct {
	t    *testing.T
	Addr string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// binary returns redis-server's path, or skips (fails) t.
func binary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("LONGPOLL_REQUIRE_REDIS") != "" {
			t.Fatalf("redis-server not found: %v", err)
		}
		t.Skip("redis-server not installed (scripts/test.sh installs it)")
	}
	return p
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start starts a redis-server on a free loopback port with extra args
// (config directives as --name value); t's cleanup stops it.
func Start(t *testing.T, extra ...string) *Server {
	t.Helper()
	bin := binary(t)
	port := freePort(t)
	dir := t.TempDir()
	s := &Server{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	s.args = append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no"}, extra...)
	s.cmd = exec.Command(bin, s.args...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.cmd.Path, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	testwait.For(s.t, "redis-server at "+s.Addr+" to answer", 10*time.Second, func() bool {
		return s.ping() == nil
	})
}

// ping sends PING and reads the answer.
func (s *Server) ping() error {
	out, err := s.Command("PING")
	if err == nil && out != "PONG" {
		err = fmt.Errorf("PING answered %q", out)
	}
	return err
}

// Command sends one command (inline) and returns its answer: a simple
// string, an integer or a bulk string ("" for nil); an error reply is an
// error. (Arrays are not read: only their length comes back.)
func (s *Server) Command(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", strings.Join(args, " ")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	case strings.HasPrefix(line, "$") && line != "$-1":
		v, err := r.ReadString('\n')
		return strings.TrimRight(v, "\r\n"), err
	case line == "$-1":
		return "", nil
	}
	return line[1:], nil
}

// Stop kills the server (SIGKILL) and waits for it; Start after it starts
// it again on the same port and directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Restart starts a stopped server again.
func (s *Server) Restart() { s.t.Helper(); s.start() }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Cluster starts three redis-server masters with cluster mode on and
// joins them into one Redis Cluster (redis-cli --cluster create); it
// returns their addresses once the cluster says it is ok.
func Cluster(t *testing.T) []*Server {
	t.Helper()
	var nodes []*Server
	var addrs []string
	for range 3 {
		dir := t.TempDir()
		n := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range nodes {
		testwait.For(t, "the cluster to be ok at "+n.Addr, 20*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", n.Addr, time.Second)
			if err != nil {
				return false
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "CLUSTER INFO\r\n")
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return false
				}
				if strings.HasPrefix(line, "cluster_state:") {
					return strings.TrimSpace(line) == "cluster_state:ok"
				}
			}
		})
	}
	return nodes
}

// Addrs are the servers' addresses.
func Addrs(nodes []*Server) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr
	}
	return out
}
