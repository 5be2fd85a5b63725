package dispatch

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldhq/herald"
)

var (
	bodyTime = time.Date(2022, 8, 23, 13, 54, 27, 612477000, time.UTC)
	sendTime = time.Date(2022, 8, 23, 13, 55, 0, 1000, time.UTC)
)

func bodyEvent(id, data string) *herald.Event {
	ev := &herald.Event{ID: id, EventType: "job.status", Version: "1.0", CreateTime: bodyTime}
	if data != "" {
		ev.Data = json.RawMessage(data)
	}
	return ev
}

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		format  string
		payload bool
		ev      *herald.Event
		want    string
	}{
		{
			name: "envelope", format: herald.FormatEnvelope, payload: true,
			ev:   bodyEvent("msg_1", `{"job": {}}`),
			want: `{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":{"job": {}}}`,
		},
		{
			name: "envelope, data not an object", format: herald.FormatEnvelope, payload: true,
			ev:   bodyEvent("msg_1", ` [1,2] `),
			want: `{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":[1,2]}`,
		},
		{
			name: "envelope without data", format: herald.FormatEnvelope, payload: true,
			ev:   bodyEvent("msg_1", ""),
			want: `{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0"}`,
		},
		{
			name: "thin", format: herald.FormatEnvelope, payload: false,
			ev:   bodyEvent("msg_1", `{"job": {}}`),
			want: `{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0"}`,
		},
		{
			name: "thin flat keeps the envelope", format: herald.FormatFlat, payload: false,
			ev:   bodyEvent("msg_1", `{"a":1}`),
			want: `{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0"}`,
		},
		{
			name: "flat", format: herald.FormatFlat, payload: true,
			ev:   bodyEvent("msg_1", `{"employee":"e1","amount":12.5}`),
			want: `{"id":"msg_1","event_type":"job.status","employee":"e1","amount":12.5}`,
		},
		{
			name: "flat, empty object", format: herald.FormatFlat, payload: true,
			ev:   bodyEvent("msg_1", ` { } `),
			want: `{"id":"msg_1","event_type":"job.status"}`,
		},
		{
			name: "flat, Herald's fields replace the data's", format: herald.FormatFlat, payload: true,
			ev:   bodyEvent("msg_1", `{"id":"theirs","a":{"id":"nested stays"},"event_type":"x","b":[1]}`),
			want: `{"id":"msg_1","event_type":"job.status","a":{"id":"nested stays"},"b":[1]}`,
		},
		{
			name: "flat, escaped key", format: herald.FormatFlat, payload: true,
			ev:   bodyEvent("msg_1", `{"\u0069d":"theirs","q":"say \"hi\""}`),
			want: `{"id":"msg_1","event_type":"job.status","q":"say \"hi\""}`,
		},
		{
			name: "flat, data not an object", format: herald.FormatFlat, payload: true,
			ev:   bodyEvent("msg_1", `"text"`),
			want: `{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":"text"}`,
		},
		{
			name: "escaped id", format: herald.FormatEnvelope, payload: false,
			ev:   bodyEvent("a\"b\\c\n<&>\u2028", ""),
			want: `{"id":"a\"b\\c\n<&>\u2028","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sub := &herald.Subscription{PayloadFormat: tt.format, IncludePayload: tt.payload}
			got := string(appendEvent(nil, sub, tt.ev))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("body is not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendBatch(t *testing.T) {
	t.Parallel()
	events := []*herald.Event{bodyEvent("msg_1", `{"a":1}`), bodyEvent("msg_2", `{"b":2}`)}
	tests := []struct {
		name   string
		format string
		want   string
	}{
		{"envelope", herald.FormatEnvelope, `{"timestamp":"2022-08-23T13:55:00.000001Z","data":[` +
			`{"id":"msg_1","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":{"a":1}},` +
			`{"id":"msg_2","create_time":"2022-08-23T13:54:27.612477Z","event_type":"job.status","version":"1.0","data":{"b":2}}]}`},
		{"flat", herald.FormatFlat, `{"timestamp":"2022-08-23T13:55:00.000001Z","data":[` +
			`{"id":"msg_1","event_type":"job.status","a":1},{"id":"msg_2","event_type":"job.status","b":2}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sub := &herald.Subscription{PayloadFormat: tt.format, IncludePayload: true}
			got := string(appendBatch(nil, sub, events, sendTime))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batch body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x00\x01\x1f\b\f\n\r\t", "<html>&amp;",
		"é ü 日本", "bad\xffutf8\xc3", "\u2028\u2029", "emoji 😀"} {
		checkAppendString(t, s)
	}
}

// checkAppendString checks that appendString's output is valid JSON that
// decodes to what encoding/json's encoding of s decodes to.
func checkAppendString(tb testing.TB, s string) {
	tb.Helper()
	got := appendString(nil, s)
	var dec string
	if err := json.Unmarshal(got, &dec); err != nil {
		tb.Fatalf("appendString(%q) = %s: %v", s, got, err)
	}
	want, _ := json.Marshal(s)
	var wantDec string
	if err := json.Unmarshal(want, &wantDec); err != nil {
		tb.Fatal(err)
	}
	if dec != wantDec {
		tb.Errorf("appendString(%q) decodes to %q, want %q", s, dec, wantDec)
	}
	if strings.ContainsAny(string(got), "\u2028\u2029") {
		tb.Errorf("appendString(%q) = %s keeps a line separator unescaped", s, got)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\u2028", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkAppendString(t, s) })
}

// FuzzFlat checks that a flat body is valid JSON with Herald's id and
// event_type, whatever object the data holds.
func FuzzFlat(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"id":2,"x":[{"id":3}]}`, `{"\u0069d":1}`, `{"event_type":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(data), &obj) != nil || obj == nil {
			return
		}
		sub := &herald.Subscription{PayloadFormat: herald.FormatFlat, IncludePayload: true}
		got := appendEvent(nil, sub, bodyEvent("msg_1", data))
		var back map[string]json.RawMessage
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("flat body of %s is not an object: %s: %v", data, got, err)
		}
		if string(back["id"]) != `"msg_1"` || string(back["event_type"]) != `"job.status"` {
			t.Errorf("flat body of %s = %s", data, got)
		}
		delete(obj, "id")
		delete(obj, "event_type")
		delete(back, "id")
		delete(back, "event_type")
		if len(obj) != len(back) {
			t.Fatalf("flat body of %s = %s: members differ", data, got)
		}
		for k, v := range obj {
			if string(bytes.TrimSpace(v)) != string(bytes.TrimSpace(back[k])) {
				t.Errorf("flat body of %s: member %q = %s, want %s", data, k, back[k], v)
			}
		}
	})
}
