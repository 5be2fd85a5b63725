package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestServeDefaultsEnvAndFlags(t *testing.T) {
	t.Parallel()
	c, err := parseServe(nil, io.Discard, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./herald-data" || c.HeaderPrefix != "X-Herald" ||
		c.MaxEventBytes != 1048576 || c.DisableAfter != 120*time.Hour || c.Retention != 720*time.Hour ||
		c.TenantPublishRPS != 0 || c.AllowPrivateNetworks {
		t.Errorf("defaults: %+v", c)
	}
	e := env(map[string]string{"HERALD_ADDR": "127.0.0.1:9999", "HERALD_ALLOW_PRIVATE_NETWORKS": "1",
		"HERALD_MAX_EVENT_BYTES": "2048", "HERALD_DISABLE_AFTER": "0", "HERALD_HEADER_PREFIX": "X-Teal"})
	c, err = parseServe(nil, io.Discard, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9999" || !c.AllowPrivateNetworks || c.MaxEventBytes != 2048 || c.DisableAfter != 0 || c.HeaderPrefix != "X-Teal" {
		t.Errorf("from the environment: %+v", c)
	}
	c, err = parseServe([]string{"--addr", "127.0.0.1:7777", "--max-event-bytes", "4096"}, io.Discard, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:7777" || c.MaxEventBytes != 4096 {
		t.Errorf("a flag must win over its variable: %+v", c)
	}
}

func TestServeRejectsBadSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"master key", []string{"--master-key", "c2hvcnQ="}, nil, "--master-key"},
		{"database url", []string{"--database-url", "mysql://x"}, nil, "--database-url"},
		{"lease margin", []string{"--lease-margin", "1s"}, nil, "--lease-margin"},
		{"proxy", []string{"--proxy", "not a url"}, nil, "--proxy"},
		{"retention", []string{"--retention", "-1h"}, nil, "--retention"},
		{"env typo", nil, map[string]string{"HERALD_RETENTION": "30 days"}, "HERALD_RETENTION"},
		{"log level", []string{"--log-level", "loud"}, nil, "--log-level"},
	}
	for _, tc := range tests {
		_, err := parseServe(tc.args, io.Discard, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--help"}, &out, io.Discard, env(nil)); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--addr", "HERALD_ADDR", "127.0.0.1:8080", "--data-dir", "./herald-data",
		"--database-url", "--admin-key", "--allow-private-networks", "--header-prefix", "X-Herald",
		"--max-event-bytes", "1048576", "--master-key", "--disable-after", "120h0m0s", "--proxy",
		"--retention", "720h0m0s", "--tenant-publish-rps", "serve", "migrate", "listen"} {
		w := strings.TrimPrefix(want, "-")
		if !strings.Contains(out.String(), w) {
			t.Errorf("herald --help lacks %q", want)
		}
	}
	var serveHelp bytes.Buffer
	if code := run(t.Context(), []string{"serve", "--help"}, io.Discard, &serveHelp, env(nil)); code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	if !strings.Contains(serveHelp.String(), "tenant-publish-rps") {
		t.Errorf("herald serve --help lacks settings:\n%s", serveHelp.String())
	}
}
