package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests in this file run the code snippets of docs/receiving.md, as
// they are written there, against webhooks that a real herald process
// delivered to a real receiver. A snippet is the fenced block after an
// HTML comment <!-- snippet: NAME -->. Node.js and Python snippets get a
// small harness appended (testdata/receiving/harness.{js,py}); the Go
// snippets are built into one program with testdata/receiving/harness.go.

// rcvDocPath is the page whose snippets are tested.
const rcvDocPath = "../docs/receiving.md"

// rcvSnippetNames is every snippet the page must have, each used below.
var rcvSnippetNames = []string{
	"go-verify", "go-decrypt", "go-handler",
	"node-standard", "node-sha256-base64", "node-sha512-hex", "node-github", "node-decrypt", "node-server",
	"python-standard", "python-sha256-base64", "python-sha512-hex", "python-github", "python-decrypt", "python-server",
	"serve-seed-000", "curl-seed-000", "serve-seed-001", "curl-seed-001", "serve-seed-002", "curl-seed-002",
}

// rcvSnippet is one fenced block of the page.
type rcvSnippet struct {
	Lang string // the fence's info string: go, js, python, sh
	Code string
}

var (
	rcvSnippetRE = regexp.MustCompile("(?s)<!-- snippet: ([a-z0-9-]+) -->\\s*\n```([a-z]*)\n(.*?)\n```")
	rcvMarkerRE  = regexp.MustCompile(`(?m)^<!-- snippet:`)
)

// rcvDoc reads the snippets of docs/receiving.md and checks that they are
// exactly rcvSnippetNames.
func rcvDoc(tb testing.TB) map[string]rcvSnippet {
	tb.Helper()
	raw, err := os.ReadFile(rcvDocPath)
	if err != nil {
		tb.Fatal(err)
	}
	doc := string(raw)
	out := map[string]rcvSnippet{}
	for _, m := range rcvSnippetRE.FindAllStringSubmatch(doc, -1) {
		if _, dup := out[m[1]]; dup {
			tb.Errorf("%s: snippet %q appears twice", rcvDocPath, m[1])
		}
		out[m[1]] = rcvSnippet{Lang: m[2], Code: m[3]}
		lang, _, _ := strings.Cut(m[1], "-")
		if want := map[string]string{"go": "go", "node": "js", "python": "python"}[lang]; want == "" && m[2] != "sh" || want != "" && m[2] != want {
			tb.Errorf("%s: snippet %q is fenced as %q", rcvDocPath, m[1], m[2])
		}
	}
	if n, m := len(rcvMarkerRE.FindAllString(doc, -1)), len(out); n != m {
		tb.Errorf("%s: %d snippet markers but %d parsed (a marker not followed by a fenced block?)", rcvDocPath, n, m)
	}
	got := slices.Sorted(maps.Keys(out))
	want := slices.Sorted(slices.Values(rcvSnippetNames))
	if !slices.Equal(got, want) {
		tb.Fatalf("%s has snippets %v, want %v", rcvDocPath, got, want)
	}
	return out
}

// rcvCase is one call of a snippet function. Go snippets take Header,
// Scheme, Prefix and Secrets; Node.js and Python ones take the lower-cased
// Headers, Secret and Args (extra arguments: a prefix, or a clock).
type rcvCase struct {
	Fn      string            `json:"fn"`
	Header  http.Header       `json:"header"`
	Headers map[string]string `json:"headers"`
	BodyB64 string            `json:"body_b64"`
	Secret  string            `json:"secret,omitempty"`
	Secrets []string          `json:"secrets,omitempty"`
	KeyB64  string            `json:"key_b64,omitempty"`
	Scheme  string            `json:"scheme,omitempty"`
	Prefix  string            `json:"prefix,omitempty"`
	Args    []any             `json:"args,omitempty"`
	Fail    bool              `json:"fail,omitempty"`
}

// rcvResult is what a harness answers for one case.
type rcvResult struct {
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

// rcvCaseOf turns a received request into a case: headers as Go sees them
// and as Node.js does (lower case, repeated values joined by ", ").
func rcvCaseOf(fn string, r received) rcvCase {
	c := rcvCase{Fn: fn, Header: r.Header.Clone(), Headers: map[string]string{},
		BodyB64: base64.StdEncoding.EncodeToString(r.Body)}
	for k, v := range r.Header {
		c.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return c
}

// withBody returns a copy of c with its body replaced.
func (c rcvCase) withBody(body []byte) rcvCase {
	c.BodyB64 = base64.StdEncoding.EncodeToString(body)
	return c
}

// withoutHeaders returns a copy of c without the named headers.
func (c rcvCase) withoutHeaders(names ...string) rcvCase {
	c.Header = c.Header.Clone()
	c.Headers = maps.Clone(c.Headers)
	for _, n := range names {
		c.Header.Del(n)
		delete(c.Headers, strings.ToLower(n))
	}
	return c
}

// rcvTamper changes one letter or digit in the middle of body, so that JSON
// stays JSON and base64 stays base64 but every signature breaks.
func rcvTamper(body []byte) []byte {
	b := bytes.Clone(body)
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := range b {
		j := (len(b)/2 + i) % len(b)
		if alnum(b[j]) {
			if b[j] == 'A' {
				b[j] = 'B'
			} else {
				b[j] = 'A'
			}
			return b
		}
	}
	return append(b, ' ')
}

// rcvCheck is a case with what it must give: a bool (verify), rcvFails
// (an error must be raised), or a function checking the result.
type rcvCheck struct {
	name  string
	c     rcvCase
	want  any
	notGo bool // uses an argument only the Node.js and Python snippets take
}

type rcvFailsT struct{}

// rcvFails: the snippet must raise an error (decrypting a changed body).
var rcvFails = rcvFailsT{}

func rcvEvaluate(tb testing.TB, snippet string, checks []rcvCheck, results []rcvResult) {
	tb.Helper()
	if len(results) != len(checks) {
		tb.Fatalf("%s: %d results for %d cases", snippet, len(results), len(checks))
	}
	for i, ck := range checks {
		res := results[i]
		switch w := ck.want.(type) {
		case bool:
			if res.Error != "" || string(res.Result) != strconv.FormatBool(w) {
				tb.Errorf("%s, %s: got result %s error %q, want %t", snippet, ck.name, res.Result, res.Error, w)
			}
		case rcvFailsT:
			if res.Error == "" {
				tb.Errorf("%s, %s: got result %s, want an error", snippet, ck.name, res.Result)
			}
		case func(testing.TB, json.RawMessage):
			if res.Error != "" {
				tb.Errorf("%s, %s: error %q", snippet, ck.name, res.Error)
				continue
			}
			w(tb, res.Result)
		default:
			tb.Fatalf("%s, %s: bad want %T", snippet, ck.name, ck.want)
		}
	}
}

// rcvTool returns the path of a program or skips the test.
func rcvTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

// rcvExec runs a program with the cases as JSON on stdin and decodes its
// answers.
func rcvExec(tb testing.TB, cases []rcvCase, name string, args ...string) []rcvResult {
	tb.Helper()
	in, err := json.Marshal(cases)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	var out []rcvResult
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		tb.Fatalf("%s %v: output %q: %v\n%s", name, args, stdout.String(), err, stderr.String())
	}
	return out
}

// rcvRunScript runs a Node.js or Python snippet on the checks' cases.
func rcvRunScript(tb testing.TB, docs map[string]rcvSnippet, name string, checks []rcvCheck) {
	tb.Helper()
	s := docs[name]
	tool, ext := "node", "js"
	if strings.HasPrefix(name, "python-") {
		tool, ext = "python3", "py"
	}
	bin := rcvTool(tb, tool)
	harness, err := os.ReadFile(filepath.Join("testdata", "receiving", "harness."+ext))
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), name+"."+ext)
	if err := os.WriteFile(file, []byte(s.Code+"\n\n"+string(harness)), 0o600); err != nil {
		tb.Fatal(err)
	}
	cases := make([]rcvCase, len(checks))
	for i, ck := range checks {
		cases[i] = ck.c
	}
	rcvEvaluate(tb, name, checks, rcvExec(tb, cases, bin, file))
}

// rcvBuildGo builds the Go snippets and testdata/receiving/harness.go into
// one program, in a module of its own that uses this checkout for
// github.com/heraldhq/herald, and returns the program's path.
func rcvBuildGo(tb testing.TB, docs map[string]rcvSnippet) string {
	tb.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	gomod := fmt.Sprintf("module rcvsnippets\n\ngo 1.26\n\nrequire github.com/heraldhq/herald v0.0.0\n\nreplace github.com/heraldhq/herald => %s\n", root)
	write("go.mod", []byte(gomod))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		tb.Fatal(err)
	}
	write("go.sum", sum)
	harness, err := os.ReadFile(filepath.Join("testdata", "receiving", "harness.go"))
	if err != nil {
		tb.Fatal(err)
	}
	write("harness.go", harness)
	for _, name := range []string{"go-verify", "go-decrypt", "go-handler"} {
		write(strings.ReplaceAll(name, "-", "_")+".go", []byte("package main\n\n"+docs[name].Code+"\n"))
	}
	bin := filepath.Join(dir, "snippets")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	// -mod=mod: the module graph is herald's, already in the module cache.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build the Go snippets of %s: %v\n%s", rcvDocPath, err, out)
	}
	return bin
}

// rcvRunGo runs the Go program on the checks' cases.
func rcvRunGo(tb testing.TB, bin string, checks []rcvCheck) {
	tb.Helper()
	var cases []rcvCase
	var kept []rcvCheck
	for _, ck := range checks {
		if !ck.notGo {
			cases = append(cases, ck.c)
			kept = append(kept, ck)
		}
	}
	rcvEvaluate(tb, "go", kept, rcvExec(tb, cases, bin))
}

// rcvPyCrypto skips the test unless Python has the cryptography package.
func rcvPyCrypto(tb testing.TB) {
	tb.Helper()
	py := rcvTool(tb, "python3")
	if err := exec.Command(py, "-c", "import cryptography.hazmat.primitives.ciphers.aead").Run(); err != nil {
		tb.Skip("Python's cryptography package is not installed; python-decrypt is not run")
	}
}

// rcvOne waits for the first request a receiver gets.
func rcvOne(tb testing.TB, rc *receiver) received {
	tb.Helper()
	return rc.waitFor(tb, 15*time.Second, "a delivery", func(r []received) bool { return len(r) >= 1 })[0]
}

// rcvWhsec is a standard secret made of a 32-byte key.
func rcvWhsec(key string) string {
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(key))
}

// rcvEnvelope checks a decrypted or parsed event against what was published.
func rcvEnvelope(id, eventType string, data any) func(testing.TB, json.RawMessage) {
	return func(tb testing.TB, raw json.RawMessage) {
		tb.Helper()
		var env map[string]any
		if err := json.Unmarshal(raw, &env); err != nil {
			tb.Errorf("not a JSON object: %s", raw)
			return
		}
		var wantData any
		b, _ := json.Marshal(data)
		_ = json.Unmarshal(b, &wantData) // as a decoder gives it back
		want := map[string]any{"id": id, "event_type": eventType, "version": "1.0", "data": wantData, "create_time": env["create_time"]}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(env["create_time"])); err != nil {
			tb.Errorf("create_time %v: %v", env["create_time"], err)
		}
		if !reflect.DeepEqual(env, want) {
			tb.Errorf("event %s, want %v", raw, want)
		}
	}
}

// rcvScheme is one signature scheme with its secrets and delivered requests.
type rcvScheme struct {
	name, sep                    string
	secret, oldSecret, newSecret string
	single, rotated              received
	singleID                     string
	batch                        []received // standard only
}

func TestReceiving(t *testing.T) {
	t.Parallel()
	docs := rcvDoc(t)
	goBin := rcvBuildGo(t, docs)
	t.Run("snippets", func(t *testing.T) { t.Parallel(); rcvTestSnippets(t, docs, goBin) })
	t.Run("servers", func(t *testing.T) { t.Parallel(); rcvTestServers(t, docs) })
	t.Run("seed-000-marketplace", func(t *testing.T) { t.Parallel(); rcvTestSeed000(t, docs, goBin) })
	t.Run("seed-001-payroll", func(t *testing.T) { t.Parallel(); rcvTestSeed001(t, docs, goBin) })
	t.Run("seed-002-tax-compliance", func(t *testing.T) { t.Parallel(); rcvTestSeed002(t, docs, goBin) })
}

// rcvTestSnippets runs every verify and decrypt snippet, and the Go
// handler, on deliveries of each scheme from a Herald with the default
// header prefix: single secrets, rotated secrets, a batch, an encrypted
// body.
func rcvTestSnippets(t *testing.T, docs map[string]rcvSnippet, goBin string) {
	h := startHerald(t, "")
	schemes := []*rcvScheme{
		{name: "standard", sep: " ", secret: rcvWhsec("standard-secret-0123456789abcdef"),
			oldSecret: rcvWhsec("old-old-old-old-old-old-old-old!"), newSecret: rcvWhsec("new-new-new-new-new-new-new-new!")},
		{name: "sha256-base64", sep: ",", secret: "s3cret-sha256", oldSecret: "old-sha256", newSecret: "new-sha256"},
		{name: "sha512-hex", sep: ",", secret: "s3cret-sha512", oldSecret: "old-sha512", newSecret: "new-sha512"},
		{name: "github", sep: ",", secret: "s3cret-github", oldSecret: "old-github", newSecret: "new-github"},
	}
	receivers := map[*rcvScheme][3]*receiver{}
	for _, s := range schemes {
		single, rotated, batch := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
		receivers[s] = [3]*receiver{single, rotated, batch}
		h.createSub(map[string]any{"url": single.URL(), "events": []string{"rcv." + s.name}, "signature_scheme": s.name, "signing_secret": s.secret})
		sub := h.createSub(map[string]any{"url": rotated.URL(), "events": []string{"rcv." + s.name + ".rotated"}, "signature_scheme": s.name, "signing_secret": s.oldSecret})
		h.mustDo(200, "POST", "/webhooks/"+sub["id"].(string)+"/rotate-secret", map[string]any{"signing_secret": s.newSecret, "grace": "1h"}, nil)
		if s.name == "standard" {
			h.createSub(map[string]any{"url": batch.URL(), "events": []string{"rcv.batch"}, "signing_secret": s.secret,
				"delivery": map[string]any{"batch_max_events": 5}})
		}
	}
	encRC := newReceiver(t, nil)
	encKey := base64.StdEncoding.EncodeToString([]byte("an-aes-256-key-of-32-bytes-long!"))
	encSecret := schemes[0].secret
	h.createSub(map[string]any{"url": encRC.URL(), "events": []string{"rcv.encrypted"}, "signing_secret": encSecret, "encryption_key": encKey})

	data := map[string]any{"job": map[string]any{"id": "j-42", "note": "héllo <&> \u2028"}}
	for _, s := range schemes {
		s.singleID = "evt-rcv-" + s.name
		h.publish(map[string]any{"id": s.singleID, "event_type": "rcv." + s.name, "data": data})
		h.publish(map[string]any{"id": "evt-rcv-rot-" + s.name, "event_type": "rcv." + s.name + ".rotated", "data": data})
	}
	batchIDs := []string{"evt-rcv-b1", "evt-rcv-b2", "evt-rcv-b3"}
	var evs []map[string]any
	for _, id := range batchIDs {
		evs = append(evs, map[string]any{"id": id, "event_type": "rcv.batch", "data": map[string]any{"n": id}})
	}
	h.mustDo(202, "POST", "/events/batch", map[string]any{"events": evs}, nil)
	h.publish(map[string]any{"id": "evt-rcv-enc", "event_type": "rcv.encrypted", "data": data})

	for _, s := range schemes {
		rs := receivers[s]
		s.single, s.rotated = rcvOne(t, rs[0]), rcvOne(t, rs[1])
		if s.name == "standard" {
			s.batch = rs[2].waitFor(t, 15*time.Second, "the batched events", func(r []received) bool {
				return len(rcvBatchIDs(t, r)) >= len(batchIDs)
			})
		}
	}
	enc := rcvOne(t, encRC)

	// verify, per scheme and language.
	for _, s := range schemes {
		var checks []rcvCheck
		add := func(name string, r received, secret string, want any) rcvCase {
			c := rcvCaseOf("verify", r)
			c.Secret, c.Secrets, c.Scheme = secret, []string{secret}, s.name
			checks = append(checks, rcvCheck{name: name, c: c, want: want})
			return c
		}
		c := add("genuine", s.single, s.secret, true)
		checks = append(checks,
			rcvCheck{name: "body changed", c: c.withBody(rcvTamper(s.single.Body)), want: false},
			rcvCheck{name: "body with a newline added", c: c.withBody(append(bytes.Clone(s.single.Body), '\n')), want: false},
			rcvCheck{name: "no signature header", c: c.withoutHeaders("Webhook-Signature", "X-Herald-Signature", "X-Hub-Signature-256"), want: false})
		add("another secret", s.single, s.oldSecret, false)
		add("rotation, old secret", s.rotated, s.oldSecret, true)
		add("rotation, new secret", s.rotated, s.newSecret, true)
		add("rotation, another secret", s.rotated, s.secret, false)
		if s.name == "standard" {
			ts, err := strconv.ParseInt(s.single.Header.Get("Webhook-Timestamp"), 10, 64)
			if err != nil {
				t.Fatalf("webhook-timestamp: %v", err)
			}
			for _, tc := range []struct {
				name string
				at   int64
				want bool
			}{{"4m59s later", ts + 299, true}, {"5m01s later (replay)", ts + 301, false}, {"5m01s earlier", ts - 301, false}} {
				ck := rcvCheck{name: tc.name, c: c, want: tc.want, notGo: true}
				ck.c.Args = []any{tc.at}
				checks = append(checks, ck)
			}
			for i, r := range s.batch {
				add(fmt.Sprintf("batch %d", i), r, s.secret, true)
			}
			add("encrypted body", enc, encSecret, true)
			ce := rcvCaseOf("verify", enc)
			ce.Secret, ce.Secrets, ce.Scheme = encSecret, []string{encSecret}, s.name
			checks = append(checks, rcvCheck{name: "encrypted body changed", c: ce.withBody(rcvTamper(enc.Body)), want: false})
		}
		sigHeader := map[string]string{"standard": "Webhook-Signature", "github": "X-Hub-Signature-256"}[s.name]
		sigHeader = cmp.Or(sigHeader, "X-Herald-Signature")
		if n := len(strings.Split(s.rotated.Header.Get(sigHeader), s.sep)); n != 2 {
			t.Errorf("%s during a rotation: %s = %q, want 2 signatures separated by %q", s.name, sigHeader, s.rotated.Header.Get(sigHeader), s.sep)
		}
		t.Run("verify-"+s.name, func(t *testing.T) {
			t.Run("go", func(t *testing.T) { rcvRunGo(t, goBin, checks) })
			t.Run("node", func(t *testing.T) { rcvRunScript(t, docs, "node-"+s.name, checks) })
			t.Run("python", func(t *testing.T) { rcvRunScript(t, docs, "python-"+s.name, checks) })
		})
	}

	// decrypt.
	dc := rcvCaseOf("decrypt", enc)
	dc.KeyB64 = encKey
	wrongKey := dc
	wrongKey.KeyB64 = base64.StdEncoding.EncodeToString([]byte("another-key-of-thirty-two-bytes!"))
	noIV := dc.withoutHeaders("X-Herald-Encryption-IV")
	decryptChecks := []rcvCheck{
		{name: "genuine", c: dc, want: rcvEnvelope("evt-rcv-enc", "rcv.encrypted", data)},
		{name: "body changed", c: dc.withBody(rcvTamper(enc.Body)), want: rcvFails},
		{name: "wrong key", c: wrongKey, want: rcvFails},
		{name: "no IV header", c: noIV, want: rcvFails},
	}
	t.Run("decrypt", func(t *testing.T) {
		t.Run("go", func(t *testing.T) { rcvRunGo(t, goBin, decryptChecks) })
		t.Run("node", func(t *testing.T) { rcvRunScript(t, docs, "node-decrypt", decryptChecks) })
		t.Run("python", func(t *testing.T) { rcvPyCrypto(t); rcvRunScript(t, docs, "python-decrypt", decryptChecks) })
	})

	// The Go receiver: verify, decrypt, batches, a failure, duplicates.
	std := schemes[0]
	hc := rcvCaseOf("handler", std.single)
	hc.Secret = std.secret
	handled := func(status int, ids ...string) func(testing.TB, json.RawMessage) {
		return func(tb testing.TB, raw json.RawMessage) {
			tb.Helper()
			var got struct {
				Status    int      `json:"status"`
				Processed []string `json:"processed"`
			}
			err := json.Unmarshal(raw, &got)
			slices.Sort(got.Processed) // as ids is
			if err != nil || got.Status != status || !slices.Equal(got.Processed, ids) {
				tb.Errorf("handler answered %s, want status %d and processed %v", raw, status, ids)
			}
		}
	}
	failing := hc
	failing.Fail = true
	handlerChecks := []rcvCheck{
		{name: "processing fails", c: failing, want: handled(503)},
		{name: "genuine", c: hc, want: handled(204, std.singleID)},
		{name: "the same again", c: hc, want: handled(204)},
		{name: "body changed", c: hc.withBody(rcvTamper(std.single.Body)), want: handled(401)},
	}
	var batchWant []string
	for i, r := range std.batch {
		c := rcvCaseOf("handler", r)
		c.Secret = std.secret
		ids := rcvBatchIDs(t, []received{r})
		batchWant = append(batchWant, ids...)
		handlerChecks = append(handlerChecks, rcvCheck{name: fmt.Sprintf("batch %d", i), c: c, want: handled(204, ids...)})
	}
	if slices.Sort(batchWant); !slices.Equal(batchWant, batchIDs) {
		t.Errorf("batched events %v, want %v", batchWant, batchIDs)
	}
	ec := rcvCaseOf("handler", enc)
	ec.Secret, ec.KeyB64 = encSecret, encKey
	handlerChecks = append(handlerChecks, rcvCheck{name: "encrypted", c: ec, want: handled(204, "evt-rcv-enc")})
	t.Run("handler/go", func(t *testing.T) { rcvRunGo(t, goBin, handlerChecks) })
}

// rcvBatchIDs returns the ids of the events in batch bodies, sorted.
func rcvBatchIDs(tb testing.TB, rs []received) []string {
	tb.Helper()
	var ids []string
	for _, r := range rs {
		var b struct {
			Timestamp string `json:"timestamp"`
			Data      []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil || b.Timestamp == "" {
			tb.Fatalf("not a batch: %s", r.Body)
		}
		for _, e := range b.Data {
			ids = append(ids, e.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// rcvTestServers runs the Node.js and Python receivers of the page, each
// with its standard verify, as the endpoints of a real Herald.
func rcvTestServers(t *testing.T, docs map[string]rcvSnippet) {
	h := startHerald(t, "")
	secret := rcvWhsec("server-secret-0123456789abcdef!!")
	for _, tc := range []struct{ lang, tool, ext string }{{"node", "node", "js"}, {"python", "python3", "py"}} {
		t.Run(tc.lang, func(t *testing.T) {
			bin := rcvTool(t, tc.tool)
			file := filepath.Join(t.TempDir(), "server."+tc.ext)
			code := docs[tc.lang+"-standard"].Code + "\n\n" + docs[tc.lang+"-server"].Code + "\n"
			if err := os.WriteFile(file, []byte(code), 0o600); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			_, port, _ := net.SplitHostPort(addr)
			out := &syncBuffer{}
			cmd := exec.Command(bin, file)
			cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret, "PORT="+port)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			rcvWaitUntil(t, "the "+tc.lang+" server listens on "+addr, func() bool {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			}, out)

			typ := "rcv.server." + tc.lang
			h.createSub(map[string]any{"url": "http://" + addr + "/hook", "events": []string{typ}, "signing_secret": secret})
			id := "evt-server-" + tc.lang
			h.publish(map[string]any{"id": id, "event_type": typ, "data": map[string]any{"k": "v"}})
			dl := h.deliveriesOf(id)
			if len(dl) != 1 {
				t.Fatalf("deliveries of %s: %v", id, dl)
			}
			h.waitStatus(dl[0], "succeeded", 15*time.Second)
			rcvWaitUntil(t, "the event printed", func() bool { return strings.Contains(out.String(), typ+" "+id+"\n") }, out)

			// At least once: the same message again is recognised.
			h.mustDo(200, "POST", "/deliveries/"+dl[0]+"/retry", nil, nil)
			rcvWaitUntil(t, "the duplicate recognised", func() bool { return strings.Contains(out.String(), "duplicate "+id+"\n") }, out)
			if n := strings.Count(out.String(), typ+" "+id+"\n"); n != 1 {
				t.Errorf("the event was processed %d times, want once:\n%s", n, out)
			}

			// A forged request is refused.
			req, _ := http.NewRequest("POST", "http://"+addr+"/hook", strings.NewReader(`{"id":"forged","event_type":"x"}`))
			req.Header.Set("webhook-id", "forged")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
			req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 || strings.Contains(out.String(), "forged") {
				t.Errorf("forged request: status %d, want 401 and nothing processed:\n%s", resp.StatusCode, out)
			}
		})
	}
}

// rcvWaitUntil polls cond for up to 15 seconds.
func rcvWaitUntil(tb testing.TB, what string, cond func() bool, out fmt.Stringer) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s; output:\n%s", what, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
