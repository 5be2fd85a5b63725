package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

var (
	errHelp  = errors.New("help shown")
	errUsage = errors.New("bad usage")
)

// Defaults of serve's settings.
const (
	defaultAddr          = "127.0.0.1:8080"
	defaultDataDir       = "./herald-data"
	defaultHeaderPrefix  = "X-Herald"
	defaultMaxEventBytes = 1 << 20
	defaultDisableAfter  = 120 * time.Hour
	defaultRetention     = 720 * time.Hour
	defaultLeaseMargin   = 30 * time.Second
	defaultShutdownWait  = 30 * time.Second
)

// serveConfig is everything serve and migrate read from flags and the environment.
type serveConfig struct {
	Addr                 string
	DataDir              string
	DatabaseURL          string
	AdminKey             string
	AllowPrivateNetworks bool
	HeaderPrefix         string
	MaxEventBytes        int64
	MasterKey            string
	DisableAfter         time.Duration
	Proxy                string
	Retention            time.Duration
	TenantPublishRPS     float64
	LeaseMargin          time.Duration
	ShutdownWait         time.Duration
	LogFormat            string
	LogLevel             string
	DebugAddr            string
}

// serveFlags builds the FlagSet of serve (and migrate), with defaults taken
// from the environment.
func serveFlags(getenv func(string) string) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
	}
	str(&c.Addr, "addr", "HERALD_ADDR", defaultAddr, "listen address of the API")
	str(&c.DataDir, "data-dir", "HERALD_DATA_DIR", defaultDataDir, "directory of the embedded SQLite store (and its generated master key)")
	str(&c.DatabaseURL, "database-url", "HERALD_DATABASE_URL", "", "PostgreSQL URL (postgres://...); when set, used instead of the embedded store")
	str(&c.AdminKey, "admin-key", "HERALD_ADMIN_KEY", "", "admin API key; when unset on first start one is generated, stored hashed, and printed once")
	boolVar(fs, getenv, &c.AllowPrivateNetworks, "allow-private-networks", "HERALD_ALLOW_PRIVATE_NETWORKS", false, "allow deliveries to loopback, private, link-local and other internal addresses")
	str(&c.HeaderPrefix, "header-prefix", "HERALD_HEADER_PREFIX", defaultHeaderPrefix, "prefix of Herald's own headers (<prefix>-Signature, -Source, -Encryption-IV)")
	int64Var(fs, getenv, &c.MaxEventBytes, "max-event-bytes", "HERALD_MAX_EVENT_BYTES", defaultMaxEventBytes, "largest event accepted, in bytes")
	str(&c.MasterKey, "master-key", "HERALD_MASTER_KEY", "", "base64 of 32 bytes sealing secrets at rest; when unset, generated into <data-dir>/master.key (SQLite) or into the database (PostgreSQL)")
	durVar(fs, getenv, &c.DisableAfter, "disable-after", "HERALD_DISABLE_AFTER", defaultDisableAfter, "disable a subscription whose every attempt failed for this long (0 = never)")
	str(&c.Proxy, "proxy", "HERALD_PROXY", "", "outbound proxy URL for deliveries (HTTP_PROXY and HTTPS_PROXY are ignored)")
	durVar(fs, getenv, &c.Retention, "retention", "HERALD_RETENTION", defaultRetention, "how long finished deliveries, their attempts and events are kept (0 = forever)")
	floatVar(fs, getenv, &c.TenantPublishRPS, "tenant-publish-rps", "HERALD_TENANT_PUBLISH_RPS", 0, "events per second one tenant may publish (0 = no limit); over it POST /events answers 429")
	durVar(fs, getenv, &c.LeaseMargin, "lease-margin", "HERALD_LEASE_MARGIN", defaultLeaseMargin, "a lease lasts the subscription's timeout plus this margin; another process takes the work over after it expires")
	durVar(fs, getenv, &c.ShutdownWait, "shutdown-wait", "HERALD_SHUTDOWN_WAIT", defaultShutdownWait, "on SIGTERM, the longest to wait for API requests under way")
	str(&c.LogFormat, "log-format", "HERALD_LOG_FORMAT", "text", "log format: text or json")
	str(&c.LogLevel, "log-level", "HERALD_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	str(&c.DebugAddr, "debug-addr", "HERALD_DEBUG_ADDR", "", "when set, serve Go's pprof profiles on this address (keep it on loopback)")
	return fs, c
}

func boolVar(fs *flag.FlagSet, getenv func(string) string, p *bool, name, env string, def bool, usage string) {
	if v := getenv(env); v != "" {
		if b, err := strconv.ParseBool(v); err == nil {
			def = b
		}
	}
	fs.BoolVar(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
}

func int64Var(fs *flag.FlagSet, getenv func(string) string, p *int64, name, env string, def int64, usage string) {
	if v := getenv(env); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			def = n
		}
	}
	fs.Int64Var(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
}

func floatVar(fs *flag.FlagSet, getenv func(string) string, p *float64, name, env string, def float64, usage string) {
	if v := getenv(env); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			def = n
		}
	}
	fs.Float64Var(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
}

func durVar(fs *flag.FlagSet, getenv func(string) string, p *time.Duration, name, env string, def time.Duration, usage string) {
	if v := getenv(env); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			def = d
		}
	}
	fs.DurationVar(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
}

// checkEnv reports environment values that do not parse, so a typo in a
// variable is an error rather than a silently ignored setting.
func checkEnv(getenv func(string) string) error {
	checks := []struct {
		env   string
		parse func(string) error
	}{
		{"HERALD_ALLOW_PRIVATE_NETWORKS", func(v string) error { _, err := strconv.ParseBool(v); return err }},
		{"HERALD_MAX_EVENT_BYTES", func(v string) error { _, err := strconv.ParseInt(v, 10, 64); return err }},
		{"HERALD_TENANT_PUBLISH_RPS", func(v string) error { _, err := strconv.ParseFloat(v, 64); return err }},
		{"HERALD_DISABLE_AFTER", func(v string) error { _, err := time.ParseDuration(v); return err }},
		{"HERALD_RETENTION", func(v string) error { _, err := time.ParseDuration(v); return err }},
		{"HERALD_LEASE_MARGIN", func(v string) error { _, err := time.ParseDuration(v); return err }},
		{"HERALD_SHUTDOWN_WAIT", func(v string) error { _, err := time.ParseDuration(v); return err }},
	}
	for _, c := range checks {
		if v := getenv(c.env); v != "" {
			if err := c.parse(v); err != nil {
				return fmt.Errorf("%s: %q does not parse: %w", c.env, v, err)
			}
		}
	}
	return nil
}

// parseServe parses args into a validated serveConfig.
func parseServe(args []string, stderr interface{ Write([]byte) (int, error) }, getenv func(string) string) (*serveConfig, error) {
	fs, c := serveFlags(getenv)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkEnv(getenv); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *serveConfig) validate() error {
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return errors.New("--database-url: must start with postgres:// or postgresql://")
	}
	if c.DatabaseURL == "" && c.DataDir == "" {
		return errors.New("--data-dir: must not be empty")
	}
	if c.MaxEventBytes < 64 {
		return fmt.Errorf("--max-event-bytes: must be at least 64, got %d", c.MaxEventBytes)
	}
	if c.DisableAfter < 0 {
		return errors.New("--disable-after: must not be negative")
	}
	if c.Retention < 0 {
		return errors.New("--retention: must not be negative")
	}
	if c.TenantPublishRPS < 0 {
		return errors.New("--tenant-publish-rps: must not be negative")
	}
	// A lease must outlive the request it covers by a real margin, or a slow
	// endpoint makes another process send the same delivery again.
	if c.LeaseMargin < 5*time.Second {
		return fmt.Errorf("--lease-margin: must be at least 5s so a lease outlives its request, got %s", c.LeaseMargin)
	}
	if c.Proxy != "" {
		u, err := url.Parse(c.Proxy)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
			return errors.New("--proxy: must be an http://, https:// or socks5:// URL with a host")
		}
	}
	if c.MasterKey != "" {
		if _, err := decodeMasterKey(c.MasterKey); err != nil {
			return err
		}
	}
	if c.HeaderPrefix == "" || strings.ContainsAny(c.HeaderPrefix, " :\t\r\n") {
		return errors.New("--header-prefix: must be a header name prefix such as X-Herald")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return errors.New("--log-format: must be text or json")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return errors.New("--log-level: must be debug, info, warn or error")
	}
	return nil
}

func decodeMasterKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != herald.MasterKeySize {
		return nil, fmt.Errorf("--master-key: must be standard base64 of exactly %d bytes", herald.MasterKeySize)
	}
	return k, nil
}
