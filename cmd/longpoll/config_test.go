package main

import (
	"errors"
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{Addr: ":8080", PollTimeout: 30 * time.Second, MaxPollTimeout: 120 * time.Second,
		SessionTTL: 5 * time.Minute, CleanupInterval: 5 * time.Minute, HeartbeatInterval: 30 * time.Second,
		OfflineTTL: 48 * time.Hour, MaxMailbox: 1000, LogFormat: "text"}
	if c.Addr != want.Addr || c.PollTimeout != want.PollTimeout || c.MaxPollTimeout != want.MaxPollTimeout ||
		c.SessionTTL != want.SessionTTL || c.CleanupInterval != want.CleanupInterval ||
		c.HeartbeatInterval != want.HeartbeatInterval || c.OfflineTTL != want.OfflineTTL ||
		c.MaxMailbox != want.MaxMailbox || len(c.PublishKeys) != 0 || c.LogFormat != "text" {
		t.Fatalf("defaults %+v", c)
	}
}

func TestParseConfigEnvAndFlags(t *testing.T) {
	c, err := parseConfig(
		[]string{"--poll-timeout", "10s", "--publish-key", "new", "--publish-key", "old"},
		env(map[string]string{
			"LONGPOLL_POLL_TIMEOUT":       "20s",
			"LONGPOLL_HEARTBEAT_INTERVAL": "0",
			"LONGPOLL_MAX_MAILBOX":        "7",
			"LONGPOLL_PUBLISH_KEY":        "envkey",
			"LONGPOLL_ADDR":               "127.0.0.1:9",
		}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PollTimeout != 10*time.Second {
		t.Errorf("flag should win over env: %v", c.PollTimeout)
	}
	if c.HeartbeatInterval != 0 || c.MaxMailbox != 7 || c.Addr != "127.0.0.1:9" {
		t.Errorf("env not applied: %+v", c)
	}
	if strings.Join(c.PublishKeys, ",") != "new,old" {
		t.Errorf("flag keys should replace env keys: %v", c.PublishKeys)
	}
	c, _ = parseConfig(nil, env(map[string]string{"LONGPOLL_PUBLISH_KEY": "a, b"}), io.Discard)
	if strings.Join(c.PublishKeys, ",") != "a,b" {
		t.Errorf("env keys: %v", c.PublishKeys)
	}
}

func TestParseConfigRejectsBadValues(t *testing.T) {
	cases := map[string][]string{
		"poll-timeout":       {"--poll-timeout", "0s"},
		"max-poll-timeout":   {"--poll-timeout", "3m"},
		"max-mailbox":        {"--max-mailbox", "-1"},
		"heartbeat-interval": {"--heartbeat-interval", "-1s"},
		"log-level":          {"--log-level", "loud"},
		"log-format":         {"--log-format", "xml"},
		"unexpected":         {"extra"},
		"invalid value":      {"--session-ttl", "five"},
	}
	for want, args := range cases {
		_, err := parseConfig(args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want an error mentioning %q", args, err, want)
		}
	}
	_, err := parseConfig(nil, env(map[string]string{"LONGPOLL_OFFLINE_TTL": "forever"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "LONGPOLL_OFFLINE_TTL") {
		t.Errorf("bad env: %v", err)
	}
	var help strings.Builder
	if _, err := parseConfig([]string{"--help"}, env(nil), &help); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(help.String(), "LONGPOLL_") || !strings.Contains(help.String(), "max-poll-timeout") ||
		!strings.Contains(help.String(), "Commands") || !strings.Contains(help.String(), "presence") || !strings.Contains(help.String(), "--version") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}

func TestParseConfigSecurityDefaults(t *testing.T) {
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ConnectSecrets) != 0 || c.TLSCert != "" || c.TLSKey != "" || len(c.CORSOrigins) != 0 ||
		len(c.AllowCIDRs) != 0 || len(c.DenyCIDRs) != 0 || len(c.TrustProxies) != 0 ||
		c.ConnectRate != 0 || c.SendRate != 0 || c.ConnectBurst != 10 || c.SendBurst != 20 ||
		c.MaxSessions != 100000 || c.MaxParkedPerIP != 0 || c.MaxHeaderBytes != 16<<10 || c.ReadHeaderTimeout != 10*time.Second {
		t.Fatalf("security defaults %+v", c)
	}
}

func TestParseConfigSecurityFlags(t *testing.T) {
	secret := strings.Repeat("s", 32)
	c, err := parseConfig([]string{
		"--connect-secret", secret, "--connect-secret", secret + "2",
		"--tls-cert", "c.pem", "--tls-key", "k.pem",
		"--cors-origins", "https://app.example.com,http://localhost:3000",
		"--allow-cidr", "10.0.0.0/8", "--allow-cidr", "192.0.2.7,2001:db8::/32",
		"--deny-cidr", "10.66.0.0/16",
		"--trust-proxy", "127.0.0.1",
		"--connect-rate", "0.5", "--connect-burst", "3", "--send-rate", "20", "--send-burst", "40",
		"--max-sessions", "0", "--max-parked-per-ip", "8", "--max-header-bytes", "8192", "--read-header-timeout", "2s",
	}, env(map[string]string{"LONGPOLL_ALLOW_CIDR": "172.16.0.0/12", "LONGPOLL_DENY_CIDR": "10.0.0.0/8"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	str := func(ps []netip.Prefix) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.String())
		}
		return strings.Join(out, ",")
	}
	if len(c.ConnectSecrets) != 2 || c.TLSCert != "c.pem" || c.TLSKey != "k.pem" ||
		strings.Join(c.CORSOrigins, " ") != "https://app.example.com http://localhost:3000" ||
		str(c.AllowCIDRs) != "10.0.0.0/8,192.0.2.7/32,2001:db8::/32" || str(c.DenyCIDRs) != "10.66.0.0/16" ||
		str(c.TrustProxies) != "127.0.0.1/32" ||
		c.ConnectRate != 0.5 || c.ConnectBurst != 3 || c.SendRate != 20 || c.SendBurst != 40 ||
		c.MaxSessions != 0 || c.MaxParkedPerIP != 8 || c.MaxHeaderBytes != 8192 || c.ReadHeaderTimeout != 2*time.Second {
		t.Fatalf("parsed %+v", c)
	}
	// from the environment alone
	c, err = parseConfig(nil, env(map[string]string{
		"LONGPOLL_CONNECT_SECRET": secret,
		"LONGPOLL_CORS_ORIGINS":   "*",
		"LONGPOLL_DENY_CIDR":      "10.1.2.0/24, ::ffff:10.9.0.0/112",
		"LONGPOLL_SEND_RATE":      "5",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ConnectSecrets) != 1 || c.CORSOrigins[0] != "*" || str(c.DenyCIDRs) != "10.1.2.0/24,10.9.0.0/16" || c.SendRate != 5 {
		t.Fatalf("from env %+v", c)
	}
}

func TestParseConfigRejectsBadSecurityValues(t *testing.T) {
	cases := map[string][]string{
		"at least 32 bytes":     {"--connect-secret", "short"},
		"give both or neither":  {"--tls-cert", "c.pem"},
		"--tls-cert and":        {"--tls-key", "k.pem"},
		"not an origin":         {"--cors-origins", "app.example.com"},
		"https://a.example/x":   {"--cors-origins", "https://a.example/x"},
		"not a network":         {"--allow-cidr", "10.0.0.0/33"},
		"neither an IP":         {"--deny-cidr", "example.com"},
		"trust-proxy":           {"--trust-proxy", "10.0.0.0/"},
		"--connect-rate":        {"--connect-rate", "-1"},
		"--send-rate":           {"--send-rate", "NaN"},
		"--connect-burst":       {"--connect-burst", "0"},
		"--send-burst":          {"--send-burst", "-3"},
		"--max-sessions":        {"--max-sessions", "-1"},
		"--max-parked-per-ip":   {"--max-parked-per-ip", "-1"},
		"--max-header-bytes":    {"--max-header-bytes", "100"},
		"--read-header-timeout": {"--read-header-timeout", "0s"},
	}
	for want, args := range cases {
		_, err := parseConfig(args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want an error mentioning %q", args, err, want)
		}
	}
}

func TestRedisFlags(t *testing.T) {
	env := func(string) string { return "" }
	c, err := parseConfig([]string{"--redis-cluster", "127.0.0.1:7000,127.0.0.1:7001", "--redis-prefix", "eu"}, env, io.Discard)
	if err != nil || len(c.RedisCluster) != 2 || c.RedisPrefix != "eu" {
		t.Fatalf("%+v %v", c.RedisCluster, err)
	}
	for _, args := range [][]string{
		{"--redis-url", "redis://127.0.0.1:6379", "--data-dir", "d"},
		{"--redis-url", "redis://127.0.0.1:6379", "--redis-cluster", "127.0.0.1:7000"},
		{"--redis-prefix", "a}b"},
		{"--redis-prefix", ""},
	} {
		if _, err := parseConfig(args, env, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	c, err = parseConfig(nil, func(k string) string {
		if k == "LONGPOLL_REDIS_URL" {
			return "redis://127.0.0.1:6390/2"
		}
		return ""
	}, io.Discard)
	if err != nil || c.RedisURL != "redis://127.0.0.1:6390/2" {
		t.Fatalf("LONGPOLL_REDIS_URL: %q %v", c.RedisURL, err)
	}
}
