package testserver

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func healthz(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url + "/healthz")
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

func TestStartStopKillRestartOnTheSameAddress(t *testing.T) {
	s := Start(t, "--heartbeat-interval", "0", "--addr", "0.0.0.0:1") // --addr is replaced
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.URL != "http://"+s.Addr {
		t.Fatalf("URL %q, Addr %q", s.URL, s.Addr)
	}
	if st := healthz(s.URL); st != 200 {
		t.Fatalf("healthz: %d", st)
	}
	url := s.URL

	if err := s.Stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v, want status 0", err)
	}
	if s.Running() || healthz(url) != 0 {
		t.Fatal("still serving after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.URL != url || healthz(url) != 200 {
		t.Fatalf("after Restart: URL %q (was %q), healthz %d", s.URL, url, healthz(url))
	}

	s.Kill()
	if s.Running() || healthz(url) != 0 {
		t.Fatal("still serving after Kill")
	}
	if err := s.Restart(); err != nil { // right after SIGKILL: the port is free again at once
		t.Fatal(err)
	}
	if healthz(url) != 200 {
		t.Fatal("not serving after the second Restart")
	}
	if err := s.Restart(); err != nil { // while running: stops first
		t.Fatal(err)
	}
	if healthz(url) != 200 || strings.Count(s.Logs(), `msg="longpoll listening"`) != 4 {
		t.Fatalf("third restart: healthz %d, logs:\n%s", healthz(url), s.Logs())
	}
	if got := s.Args(); len(got) != 2 || got[0] != "--heartbeat-interval" {
		t.Fatalf("Args %q", got)
	}
}

func TestLaunchReportsAFailedStartWithItsOutput(t *testing.T) {
	_, err := Launch(nil, "--log-format", "xml")
	if err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Fatalf("err = %v, want the server's complaint about --log-format", err)
	}
}

func TestStartEnvPassesTheEnvironment(t *testing.T) {
	s := StartEnv(t, []string{"LONGPOLL_PUBLISH_KEY=k-0123456789abcdef"}, "--heartbeat-interval", "0")
	res, err := http.Get(s.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/stats without the key: %d, want 401 (the key came from the environment)", res.StatusCode)
	}
}

func TestWithoutAddr(t *testing.T) {
	got := strings.Join(withoutAddr([]string{"--addr", ":1", "-x", "--addr=:2", "-addr", ":3", "-addr=:4", "y"}), " ")
	if got != "-x y" {
		t.Fatalf("got %q", got)
	}
}
