package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	adminKey  = "hk_bench_admin_key"
	masterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// fleet is the herald binary built for one bench run and the processes
// started from it.
type fleet struct {
	procs   []*proc
	dir     string // temporary: the binary and the data directory
	dataDir string // the SQLite data directory; "" on PostgreSQL
	dbURL   string // on PostgreSQL: o.dbURL with this fleet's own schema
	schema  string // that schema
	build   string // how the binary was built, for the table header
	keep    bool
}

// launch builds herald with o.tags and starts o.processes processes of it
// on a fresh data directory (or in a fresh schema of o.dbURL's database),
// each with --retention retention.
func launch(ctx context.Context, o options, retention time.Duration) (*fleet, error) {
	bin, dir, err := build(ctx, o.src, o.tags)
	if err != nil {
		return nil, err
	}
	f := &fleet{dir: dir, build: buildLabel(bin), keep: o.keep}
	if o.dbURL == "" {
		f.dataDir = filepath.Join(dir, "data")
	} else if f.dbURL, f.schema, err = freshSchema(ctx, o.dbURL); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for i := range o.processes {
		p, err := startHerald(bin, f.dataDir, f.dbURL, retention)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("start herald %d: %w", i, err)
		}
		f.procs = append(f.procs, p)
	}
	return f, nil
}

// api is the first process's base URL.
func (f *fleet) api() string { return f.procs[0].url }

// close stops every process and removes the directory unless kept.
func (f *fleet) close() {
	for _, p := range f.procs {
		p.stop()
	}
	if f.keep {
		fmt.Printf("kept %s\n", f.dir)
		if f.schema != "" {
			fmt.Printf("kept schema %s\n", f.schema)
		}
		return
	}
	os.RemoveAll(f.dir)
	if f.schema != "" {
		dropSchema(f.dbURL, f.schema)
	}
}

// freshSchema creates a new schema in the database of url and returns url
// with that schema as its search_path, where herald then keeps its tables:
// every run starts on empty tables, as on SQLite, whatever earlier runs left.
func freshSchema(ctx context.Context, url string) (string, string, error) {
	schema := fmt.Sprintf("herald_bench_%d", time.Now().UnixNano())
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", "", fmt.Errorf("bench schema: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		return "", "", fmt.Errorf("bench schema: %w", err)
	}
	u, err := neturl.Parse(url)
	if err != nil {
		return "", "", fmt.Errorf("bench schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema, nil
}

// dropSchema removes a fleet's schema and everything in it.
func dropSchema(url, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
		fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, err)
	}
}

type proc struct {
	cmd *exec.Cmd
	url string
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
	}
}

// build compiles ./cmd/herald of the checkout src ("" for this one) with
// tags (comma- or space-separated) into a new temporary directory. The sqlite_cgo tag needs cgo, so it builds with
// CGO_ENABLED=1.
func build(ctx context.Context, src, tags string) (bin, dir string, err error) {
	dir, err = os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return "", "", fmt.Errorf("build herald: %w", err)
	}
	bin = filepath.Join(dir, "herald")
	args := []string{"build", "-o", bin}
	list := strings.FieldsFunc(tags, func(r rune) bool { return r == ',' || r == ' ' })
	if len(list) > 0 {
		args = append(args, "-tags", strings.Join(list, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/herald")...)
	cmd.Dir = src
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = os.Environ()
	if slices.Contains(list, "sqlite_cgo") {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=1")
	}
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("build herald (run bench from the repository root): %w", err)
	}
	return bin, dir, nil
}

// buildLabel describes a herald binary from its embedded build information:
// the build tags, whether cgo was on, and the SQLite driver linked in.
func buildLabel(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "build: unknown (" + err.Error() + ")"
	}
	tags, cgo := "none", "0"
	for _, s := range info.Settings {
		switch s.Key {
		case "-tags":
			tags = s.Value
		case "CGO_ENABLED":
			cgo = s.Value
		}
	}
	driver := "unknown"
	for _, d := range info.Deps {
		if d.Path == "modernc.org/sqlite" || d.Path == "github.com/mattn/go-sqlite3" {
			driver = d.Path + " " + d.Version
		}
	}
	return fmt.Sprintf("build tags: %s, CGO_ENABLED=%s, SQLite driver %s", tags, cgo, driver)
}

// startHerald starts one herald serve and waits until it listens. It runs
// in its own process group, so a Ctrl-C reaches only bench, which then
// stops herald itself (after reading its figures); if bench dies, herald
// gets SIGTERM.
func startHerald(bin, dataDir, dbURL string, retention time.Duration) (*proc, error) {
	args := []string{"serve", "--addr", "127.0.0.1:0", "--admin-key", adminKey, "--allow-private-networks",
		"--log-level", "warn", "--retention", retention.String()}
	if dbURL != "" {
		args = append(args, "--database-url", dbURL, "--master-key", masterKey)
	} else {
		args = append(args, "--data-dir", dataDir)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if k := strings.Index(sc.Text(), "listening on "); k >= 0 {
			go io.Copy(io.Discard, out)
			return &proc{cmd: cmd, url: strings.TrimSpace(sc.Text()[k+len("listening on "):])}, nil
		}
	}
	cmd.Wait()
	return nil, errors.New("herald exited before listening")
}

func call(ctx context.Context, base, method, path string, body, out any) error {
	return callClient(ctx, http.DefaultClient, base, method, path, body, out)
}

func callClient(ctx context.Context, c *http.Client, base, method, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return callBytes(ctx, c, base, method, path, b, out)
}

// callBytes is callClient with a body that is JSON already.
func callBytes(ctx context.Context, c *http.Client, base, method, path string, b []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// status is the HTTP status of an admin GET.
func status(ctx context.Context, base, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
