package api_test

import (
	"net/netip"
	"testing"

	"github.com/longpoll/longpoll/api"
	"github.com/longpoll/longpoll/poll"
)

// With --trust-proxy for a network (a cluster's pod range, a VPC) and no
// publish key, any host in that network that sends X-Forwarded-For:
// 127.0.0.1 and Host: localhost is taken for a local publisher.
func TestTrustedProxyXFFIsNotALocalPublisher(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for _, path := range []string{"/push", "/presence?userId=alice", "/stats"} {
		method, ct, body := "GET", "", ""
		if path == "/push" {
			method, ct, body = "POST", ctJSON, `{"data":"from a pod"}`
		}
		rec := s.do(t, method, path, ct, body, remote("10.1.2.3:5555"), header("X-Forwarded-For", "127.0.0.1"))
		if rec.Code != 403 {
			t.Errorf("%s %s from 10.1.2.3 claiming X-Forwarded-For 127.0.0.1: %d %s, want 403", method, path, rec.Code, rec.Body)
		}
	}
}

// A proxy on this host (its peer loopback) forwarding a client from
// elsewhere does not make that client a local publisher.
func TestLocalProxyDoesNotMakeClientsLocal(t *testing.T) {
	s := newServer(t, poll.Config{}, api.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	rec := s.do(t, "GET", "/stats", "", "", remote("127.0.0.1:5555"), header("X-Forwarded-For", "198.51.100.7"))
	if rec.Code != 403 {
		t.Errorf("a client behind a local proxy: %d %s, want 403", rec.Code, rec.Body)
	}
	rec = s.do(t, "GET", "/stats", "", "", remote("127.0.0.1:5555"))
	if rec.Code != 200 {
		t.Errorf("a local client with no forwarded address: %d %s, want 200", rec.Code, rec.Body)
	}
}
