package main

import (
	"errors"
	"flag"
	"io"
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
		!strings.Contains(help.String(), "LONGPOLL_") || !strings.Contains(help.String(), "max-poll-timeout") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}
