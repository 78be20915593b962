package api_test

import (
	"io"
	"net/netip"
	"testing"

	"github.com/longpoll/longpoll/api"
)

// A connection owned after a publisher's push (takeOver) applies to its GET
// /data re-polls the network filter that the echo /data route applies
// (filterNetworks), though /push itself has no such filter.
func TestOwnedPublisherConnectionAppliesNetworkFilters(t *testing.T) {
	const key = "0123456789abcdef-publisher-key"
	p := newParkServer(t, api.Config{PublishKeys: []string{key},
		DenyNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	sid := p.connect(t, "lamp")
	// The echo route refuses this client's polls.
	fresh := dialRaw(t, p.addr)
	fresh.send("GET", "/data?timeout=0&sessionId="+sid, "")
	if res, _ := fresh.read(); res.StatusCode != 403 {
		t.Fatalf("echo route: %d, want 403", res.StatusCode)
	}
	c := dialRaw(t, p.addr)
	auth := "Authorization: Bearer " + key + "\r\n"
	if _, err := io.WriteString(c.conn, pushRequest(`{"to":{"sessionId":"`+sid+`"},"data":1}`, auth)); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.read(); res.StatusCode != 202 {
		t.Fatalf("push: %d", res.StatusCode)
	}
	c.send("GET", "/data?timeout=0&sessionId="+sid, "")
	if res, body := c.read(); res.StatusCode != 403 {
		t.Fatalf("re-poll on the owned publisher connection: %d %q, want 403 as the echo route answers", res.StatusCode, body)
	}
}
