package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// request builds a request of body carrying hdrs.
func request(tb testing.TB, method string, body []byte, hdrs http.Header) *http.Request {
	tb.Helper()
	req := httptest.NewRequest(method, "/hook", strings.NewReader(string(body)))
	for k, v := range hdrs {
		req.Header[k] = v
	}
	return req
}

// signed returns the headers Sign gives body under the X-Teal prefix, plus
// extra name/value pairs.
func signed(tb testing.TB, scheme, secret, msgID string, ts time.Time, body []byte, extra ...string) http.Header {
	tb.Helper()
	h, err := Sign(SignParams{Scheme: scheme, HeaderPrefix: "X-Teal", Secrets: []string{secret}, MsgID: msgID, Timestamp: ts, Body: body})
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

func TestHandler(t *testing.T) {
	t.Parallel()
	encrypt := func(plain string) ([]byte, string) {
		b, iv, err := Encrypt(encKey, []byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		return b, iv
	}
	const ivH = "X-Teal-Encryption-IV"
	batch := `{"timestamp":"2024-03-01T12:00:00.000000Z","data":[{"id":"a","event_type":"x"},{"id":"b","event_type":"y"}]}`
	flat := `{"id":"evt_9","event_type":"RTTM_TIN_VALIDATION","timestamp":1700000000,"data":[1,2]}`
	encSingle, ivSingle := encrypt(string(testBody))
	encBatch, ivBatch := encrypt(batch)
	encFlat, ivFlat := encrypt(flat)
	encNull, ivNull := encrypt("null")
	encArray, ivArray := encrypt(`[{"id":"a"}]`)
	garbage := []byte("bm90IGNpcGhlcnRleHQ=")
	teal := HandlerConfig{Scheme: SchemeSHA512Hex, HeaderPrefix: "X-Teal", Secrets: []string{"old", "s"}, EncryptionKey: encKey}
	std := HandlerConfig{Scheme: SchemeStandard, HeaderPrefix: "X-Teal", Secrets: []string{stdSec}, Now: func() time.Time { return t0 }}

	tests := []struct {
		name       string
		cfg        HandlerConfig
		method     string
		body       []byte
		header     http.Header
		wantCode   int
		wantID     string
		wantBatch  bool
		wantEvents []string // event ids; nil: next must not run
	}{
		{name: "encrypted single", cfg: teal, body: encSingle, header: signed(t, SchemeSHA512Hex, "s", "", t0, encSingle, ivH, ivSingle),
			wantCode: 200, wantID: "evt_1", wantEvents: []string{"evt_1"}},
		{name: "encrypted batch", cfg: teal, body: encBatch, header: signed(t, SchemeSHA512Hex, "s", "", t0, encBatch, ivH, ivBatch),
			wantCode: 200, wantBatch: true, wantEvents: []string{"a", "b"}},
		{name: "flat event with odd fields", cfg: teal, body: encFlat, header: signed(t, SchemeSHA512Hex, "s", "", t0, encFlat, ivH, ivFlat),
			wantCode: 200, wantID: "evt_9", wantEvents: []string{"evt_9"}},
		{name: "old secret during rotation", cfg: teal, body: encSingle, header: signed(t, SchemeSHA512Hex, "old", "", t0, encSingle, ivH, ivSingle),
			wantCode: 200, wantID: "evt_1", wantEvents: []string{"evt_1"}},
		{name: "unsigned", cfg: teal, body: encSingle, header: http.Header{ivH: {ivSingle}}, wantCode: 401},
		{name: "wrong secret", cfg: teal, body: encSingle, header: signed(t, SchemeSHA512Hex, "t", "", t0, encSingle, ivH, ivSingle), wantCode: 401},
		{name: "plaintext signed instead of ciphertext", cfg: teal, body: encSingle, header: signed(t, SchemeSHA512Hex, "s", "", t0, testBody, ivH, ivSingle), wantCode: 401},
		{name: "signed garbage", cfg: teal, body: garbage, header: signed(t, SchemeSHA512Hex, "s", "", t0, garbage, ivH, ivSingle), wantCode: 400},
		{name: "no IV", cfg: teal, body: encSingle, header: signed(t, SchemeSHA512Hex, "s", "", t0, encSingle), wantCode: 400},
		{name: "IV of another message", cfg: teal, body: encSingle, header: signed(t, SchemeSHA512Hex, "s", "", t0, encSingle, ivH, ivBatch), wantCode: 400},
		{name: "plaintext null", cfg: teal, body: encNull, header: signed(t, SchemeSHA512Hex, "s", "", t0, encNull, ivH, ivNull), wantCode: 400},
		{name: "plaintext array", cfg: teal, body: encArray, header: signed(t, SchemeSHA512Hex, "s", "", t0, encArray, ivH, ivArray), wantCode: 400},
		{name: "GET", cfg: teal, method: "GET", wantCode: 405},
		{name: "over MaxBody", cfg: HandlerConfig{Scheme: SchemeGitHub, Secrets: []string{"s"}, MaxBody: 64}, body: testBody,
			header: signed(t, SchemeGitHub, "s", "", t0, testBody), wantCode: 413},
		{name: "at MaxBody", cfg: HandlerConfig{Scheme: SchemeGitHub, Secrets: []string{"s"}, MaxBody: int64(len(testBody))}, body: testBody,
			header: signed(t, SchemeGitHub, "s", "", t0, testBody), wantCode: 200, wantID: "evt_1", wantEvents: []string{"evt_1"}},
		{name: "standard", cfg: std, body: testBody, header: signed(t, SchemeStandard, stdSec, "msg_7", t0.Add(-time.Minute), testBody),
			wantCode: 200, wantID: "msg_7", wantEvents: []string{"evt_1"}},
		{name: "standard batch takes webhook-id", cfg: std, body: []byte(batch), header: signed(t, SchemeStandard, stdSec, "bat_1", t0, []byte(batch)),
			wantCode: 200, wantID: "bat_1", wantBatch: true, wantEvents: []string{"a", "b"}},
		{name: "standard stale", cfg: std, body: testBody, header: signed(t, SchemeStandard, stdSec, "msg_7", t0.Add(-time.Hour), testBody), wantCode: 401},
		{name: "standard not JSON", cfg: std, body: []byte("hello"), header: signed(t, SchemeStandard, stdSec, "msg_7", t0, []byte("hello")), wantCode: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got *Message
			h := Handler(tc.cfg, func(w http.ResponseWriter, r *http.Request, m *Message) {
				got = m
				w.WriteHeader(http.StatusOK)
			})
			method := tc.method
			if method == "" {
				method = "POST"
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, request(t, method, tc.body, tc.header))
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d (%q), want %d", rec.Code, rec.Body.String(), tc.wantCode)
			}
			if tc.wantCode == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow %q, want POST", rec.Header().Get("Allow"))
			}
			if tc.wantEvents == nil {
				if got != nil {
					t.Fatalf("next ran with %+v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("next did not run")
			}
			if got.ID != tc.wantID || got.Batch != tc.wantBatch {
				t.Errorf("ID %q, Batch %v; want %q, %v", got.ID, got.Batch, tc.wantID, tc.wantBatch)
			}
			envs, err := got.Envelopes()
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range envs {
				ids = append(ids, e.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.wantEvents, ",") {
				t.Errorf("events %v, want %v", ids, tc.wantEvents)
			}
			if !strings.HasPrefix(string(got.Body), "{") {
				t.Errorf("Body %q is not the plaintext", got.Body)
			}
		})
	}
}

func TestHandlerPanicsOnBadConfig(t *testing.T) {
	t.Parallel()
	next := func(http.ResponseWriter, *http.Request, *Message) {}
	tests := []struct {
		name string
		cfg  HandlerConfig
	}{
		{"unknown scheme", HandlerConfig{Scheme: "md5", Secrets: []string{"s"}}},
		{"no secret", HandlerConfig{Scheme: SchemeGitHub}},
		{"short key", HandlerConfig{Scheme: SchemeGitHub, Secrets: []string{"s"}, EncryptionKey: encKey[:16]}},
		{"empty non-nil key", HandlerConfig{Scheme: SchemeGitHub, Secrets: []string{"s"}, EncryptionKey: []byte{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("Handler did not panic")
				}
			}()
			Handler(tc.cfg, next)
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		webhookID string
		wantErr   bool
		wantID    string
		wantBatch bool
		wantN     int
	}{
		{name: "envelope", body: string(testBody), wantID: "evt_1", wantN: 1},
		{name: "envelope, webhook-id wins", body: string(testBody), webhookID: "msg_1", wantID: "msg_1", wantN: 1},
		{name: "envelope without data", body: `{"id":"e","create_time":"t","event_type":"x","version":"1.0"}`, wantID: "e", wantN: 1},
		{name: "flat with timestamp and data array", body: `{"id":"e","event_type":"x","timestamp":"t","data":[1]}`, wantID: "e", wantN: 1},
		{name: "flat with numeric id", body: `{"id":5,"event_type":"x"}`, wantN: 1},
		{name: "batch", body: ` {"timestamp":"2024-03-01T12:00:00Z","data":[{"id":"a"},{"id":"b"},{"id":"c"}]} `, wantBatch: true, wantN: 3},
		{name: "empty batch", body: `{"timestamp":"2024-03-01T12:00:00Z","data":[]}`, wantBatch: true, wantN: 0},
		{name: "batch with webhook-id", body: `{"timestamp":"t","data":[{"id":"a"}]}`, webhookID: "bat_1", wantID: "bat_1", wantBatch: true, wantN: 1},
		{name: "batch with a numeric timestamp", body: `{"timestamp":5,"data":[{"id":"a"}]}`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "array", body: `[{"id":"a"}]`, wantErr: true},
		{name: "string", body: `"x"`, wantErr: true},
		{name: "empty", body: ``, wantErr: true},
		{name: "truncated", body: `{"id":"a"`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tc.webhookID != "" {
				h.Set(HeaderWebhookID, tc.webhookID)
			}
			m, err := Parse(h, []byte(tc.body), nil, "")
			if tc.wantErr {
				if err == nil {
					t.Errorf("Parse = %+v, want an error", m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.ID != tc.wantID || m.Batch != tc.wantBatch || len(m.Events) != tc.wantN {
				t.Errorf("ID %q, Batch %v, %d events; want %q, %v, %d", m.ID, m.Batch, len(m.Events), tc.wantID, tc.wantBatch, tc.wantN)
			}
			for i, ev := range m.Events {
				if !json.Valid(ev) {
					t.Errorf("event %d is not JSON: %q", i, ev)
				}
			}
		})
	}
}

func TestMessageEnvelope(t *testing.T) {
	t.Parallel()
	m, err := Parse(http.Header{}, testBody, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Envelope(0)
	want := Envelope{ID: "evt_1", CreateTime: "2022-08-23T13:54:27.612477Z", EventType: "job.status", Version: "1.0", Data: json.RawMessage(`{"job":{}}`)}
	if err != nil || e.ID != want.ID || e.CreateTime != want.CreateTime || e.EventType != want.EventType || e.Version != want.Version || string(e.Data) != string(want.Data) {
		t.Errorf("Envelope(0) = %+v, %v; want %+v", e, err, want)
	}
	for _, i := range []int{-1, 1} {
		if _, err := m.Envelope(i); err == nil {
			t.Errorf("Envelope(%d) gives no error", i)
		}
	}
	bad := &Message{Events: []json.RawMessage{json.RawMessage(`{"id":"a"}`), json.RawMessage(`{"id":7}`)}}
	if _, err := bad.Envelopes(); err == nil {
		t.Error("Envelopes decodes a numeric id into a string")
	}
}
