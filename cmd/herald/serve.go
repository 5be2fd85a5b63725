package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/api"
	"github.com/heraldhq/herald/dispatch"
	"github.com/heraldhq/herald/publish"
	"github.com/heraldhq/herald/retention"
	"github.com/heraldhq/herald/sqlite"
	"github.com/heraldhq/herald/webhook"
)

// Names of settings kept in the store.
const (
	settingAdminKeyHash = "admin_key_hash"
	settingMasterKey    = "master_key"
	masterKeyFile       = "master.key"
)

func newLogger(c *serveConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c, err := parseServe(args, stderr, getenv)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

// openStore opens the configured store, applies migrations, and sets up the
// master key that seals secrets at rest.
func openStore(ctx context.Context, c *serveConfig, log *slog.Logger) (herald.Store, error) {
	key, err := masterKey(ctx, c, log)
	if err != nil {
		return nil, err
	}
	sealer, err := herald.NewSealer(key)
	if err != nil {
		return nil, err
	}
	st, err := openRaw(ctx, c, sealer, log)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return st, nil
}

func openRaw(ctx context.Context, c *serveConfig, sealer *herald.Sealer, log *slog.Logger) (herald.Store, error) {
	if c.DatabaseURL != "" {
		return openPostgres(ctx, c, sealer, log)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(c.DataDir, "herald.db"), Sealer: sealer, Logger: log, Exclusive: true})
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	return st, nil
}

// masterKey returns the key that seals secrets: the flag's, or one kept in a
// mode-0600 file of the data directory, or (PostgreSQL) one kept in the
// database, shared by every process.
func masterKey(ctx context.Context, c *serveConfig, log *slog.Logger) ([]byte, error) {
	if c.MasterKey != "" {
		return decodeMasterKey(c.MasterKey)
	}
	fresh := make([]byte, herald.MasterKeySize)
	_, _ = rand.Read(fresh)
	if c.DatabaseURL == "" {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		return keyFile(filepath.Join(c.DataDir, masterKeyFile), fresh)
	}
	// The store needs a sealer to open; settings are never sealed, so a
	// throwaway one serves to read or create the shared key.
	tmp, err := herald.NewSealer(fresh)
	if err != nil {
		return nil, err
	}
	st, err := openRaw(ctx, c, tmp, log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	got, err := st.SettingPutIfAbsent(ctx, settingMasterKey, []byte(base64.StdEncoding.EncodeToString(fresh)))
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	log.Warn("the master key is kept in the database: a dump of it exposes every signing secret and encryption key; set --master-key (HERALD_MASTER_KEY) to keep it elsewhere")
	return decodeMasterKey(string(got))
}

// keyFile reads the key at path, or creates it with fresh (mode 0600) if it
// does not exist. O_EXCL makes two processes racing agree on one key.
func keyFile(path string, fresh []byte) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(fresh) + "\n")
		if serr := f.Sync(); werr == nil {
			werr = serr
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return nil, fmt.Errorf("write master key: %w", werr)
		}
		return fresh, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	k, err := decodeMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// adminKeyHash returns the hash of the admin key. Without --admin-key, the
// first start generates a key, stores its hash and prints the key once.
func adminKeyHash(ctx context.Context, c *serveConfig, st herald.Store, stdout io.Writer) ([]byte, error) {
	if c.AdminKey != "" {
		h := sha256.Sum256([]byte(c.AdminKey))
		return h[:], nil
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	key := "hk_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(key))
	got, err := st.SettingPutIfAbsent(ctx, settingAdminKeyHash, h[:])
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	if string(got) == string(h[:]) {
		fmt.Fprintf(stdout, "Generated admin API key (shown once, store it now): %s\n", key)
	}
	return got, nil
}

// GC defaults of serve, each kept when its Go environment variable is set.
const (
	// gcPercent trades memory for CPU: Herald's live heap is small (tens of
	// MiB), and collecting at 4× it instead of 2× cut CPU per delivery by
	// about a tenth in go run ./bench (docs/performance.md).
	gcPercent = 300
	// gcMemoryLimit makes the collector work harder before the heap, not
	// the machine, runs out: it bounds what gcPercent may grow to.
	gcMemoryLimit = 512 << 20
)

// tuneGC applies the GC defaults unless GOGC or GOMEMLIMIT say otherwise.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(gcMemoryLimit)
	}
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c, err := parseServe(args, stderr, getenv)
	if err != nil {
		return err
	}
	tuneGC(getenv)
	log := newLogger(c, stderr)
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer st.Close()
	adminHash, err := adminKeyHash(ctx, c, st, stdout)
	if err != nil {
		return err
	}
	var proxy *url.URL
	if c.Proxy != "" {
		proxy, _ = url.Parse(c.Proxy)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	disp, err := dispatch.New(dispatch.Config{
		Store:                st,
		Logger:               log,
		Registerer:           reg,
		LeaseMargin:          c.LeaseMargin,
		HeaderPrefix:         c.HeaderPrefix,
		AllowPrivateNetworks: c.AllowPrivateNetworks,
		Proxy:                proxy,
		DisableAfter:         c.DisableAfter,
		DisableNever:         c.DisableAfter == 0,
	})
	if err != nil {
		return err
	}
	pub, err := publish.New(publish.Config{Store: st, Logger: log, Registerer: reg, OnCommit: disp.Notify,
		Claim: disp.Claim, OnClaim: disp.Claimed})
	if err != nil {
		return err
	}
	handler, err := api.New(api.Config{
		Store:                st,
		Publisher:            pub,
		Logger:               log,
		AdminKeyHash:         adminHash,
		MaxEventBytes:        c.MaxEventBytes,
		TenantPublishRPS:     c.TenantPublishRPS,
		AllowPrivateNetworks: c.AllowPrivateNetworks,
		HeaderPrefix:         c.HeaderPrefix,
		GenerateSecret:       webhook.GenerateSecret,
		ValidSecret:          webhook.ValidSecret,
		ValidScheme:          webhook.ValidScheme,
		Metrics:              promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	})
	if err != nil {
		return err
	}
	purger, err := retention.New(retention.Config{Store: st, Retention: c.Retention, Logger: log})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// The workers run under their own context: on SIGTERM the API stops
	// first, then the publisher flushes, then the dispatcher drains.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	pub.Start(work)
	dispErr := make(chan error, 1)
	go func() { dispErr <- disp.Start(work) }()
	go purger.Run(work)
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()

	if c.DebugAddr != "" {
		go serveDebug(work, c.DebugAddr, log)
	}
	fmt.Fprintf(stdout, "herald %s listening on http://%s\n", herald.Version, ln.Addr())
	log.Info("herald started", "addr", ln.Addr().String(), "store", storeName(c))

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		cancelWork()
		return fmt.Errorf("http server: %w", err)
	case err := <-dispErr:
		cancelWork()
		return fmt.Errorf("dispatcher: %w", err)
	}
	log.Info("shutting down: draining")
	shutCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownWait)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("http shutdown", "error", err)
	}
	pub.Stop()
	disp.Stop()
	cancelWork()
	log.Info("stopped")
	return nil
}

func storeName(c *serveConfig) string {
	if c.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite"
}

// serveDebug serves pprof on its own listener, apart from the API, so
// profiles are never reachable through the API's address.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("debug listener", "error", err)
	}
}
