package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// plainInput is an eventInput as the strict path reads it, with its data
// compacted as eventRequest stores it (nil for none or null).
type plainInput struct {
	ID, EventType, Version, CreateTime *string
	Test                               *bool
	Data                               []byte
}

func plain(tb testing.TB, in eventInput) plainInput {
	tb.Helper()
	p := plainInput{ID: in.ID, EventType: in.EventType, Version: in.Version, CreateTime: in.CreateTime, Test: in.Test}
	if len(in.Data) > 0 && !bytes.Equal(in.Data, []byte("null")) {
		if in.compact {
			p.Data = in.Data
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, in.Data); err != nil {
				tb.Fatalf("strict path accepted data it cannot compact: %q", in.Data)
			}
			p.Data = buf.Bytes()
		}
	}
	return p
}

// checkFast holds the one-pass decoders to the strict path: whatever they
// accept, the strict path accepts and reads the same.
func checkFast(t *testing.T, body []byte) (batchOK, eventOK bool) {
	t.Helper()
	if evs, ok := fastBatch(body); ok {
		batchOK = true
		var in struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := decodeJSON(body, &in, ""); err != nil {
			t.Fatalf("fastBatch accepted %q; the strict path says %v", body, err)
		}
		if len(in.Events) != len(evs) || len(evs) == 0 || len(evs) > MaxBatchEvents {
			t.Fatalf("fastBatch read %d events of %q, the strict path %d", len(evs), body, len(in.Events))
		}
		for i, raw := range in.Events {
			var slow eventInput
			if err := decodeJSON(raw, &slow, fmt.Sprintf("events[%d].", i)); err != nil {
				t.Fatalf("fastBatch accepted %q; the strict path says %v", body, err)
			}
			if evs[i].size != len(raw) {
				t.Errorf("events[%d] of %q: size %d, want %d", i, body, evs[i].size, len(raw))
			}
			if d := cmp.Diff(plain(t, slow), plain(t, evs[i].in)); d != "" {
				t.Errorf("events[%d] of %q (-strict +fast):\n%s", i, body, d)
			}
		}
	}
	if fast, ok := fastEvent(body); ok {
		eventOK = true
		var slow eventInput
		if err := decodeJSON(body, &slow, ""); err != nil {
			t.Fatalf("fastEvent accepted %q; the strict path says %v", body, err)
		}
		if d := cmp.Diff(plain(t, slow), plain(t, fast)); d != "" {
			t.Errorf("event %q (-strict +fast):\n%s", body, d)
		}
	}
	return batchOK, eventOK
}

var fastSeeds = []string{
	`{"events":[{"id":"e1","event_type":"job.status","data":{"a":1}}]}`,
	"{ \"events\" : [ {\"event_type\": \"a.b\", \"data\": {\"x\": [1, 2.5e3, -0.1, true, false, null, \"s p\\\"\\u00e9\"]}, \"test\": true},\n {\"event_type\":\"c\",\"version\":\"2\",\"create_time\":\"2024-01-02T15:04:05Z\",\"data\":null,\"id\":null} ] }\n",
	`{"id":"x","event_type":"job.status","version":"1.0","data":{"job":{}},"create_time":"2022-08-23T13:54:27.612477Z","test":false}`,
	`{"event_type":"a","data":"only a string"}`,
	`{"event_type":"a","data":[ ]}`,
	`{}`,
	`{"events":[]}`,
	`{"events":[{"event_type":"a"},]}`,
	`{"events":[{"event_type":"a","event_type":"b"}]}`,
	`{"events":[{"ID":"a","event_type":"b"}]}`,
	`{"events":[{"event_type":"\u0061"}]}`,
	`{"events":[{"event_type":"a","data":01}]}`,
	`{"events":[{"event_type":"a","data":1.}]}`,
	`{"events":[{"event_type":"a","data":"\x"}]}`,
	`{"events":[{"event_type":"a","data":{"k" 1}}]}`,
	`{"events":[{"event_type":"a","data":tru}]}`,
	`{"events":[{"event_type":"a"}]} x`,
	`{"event_type":"a","data":{"s":"tab	in string"}}`,
	`{"event_type":"a","data":"é"}`,
	`{"events":[{"event_type":"a","data":` + strings.Repeat("[", 61) + strings.Repeat("]", 61) + `}]}`,
	`{"events":[{"event_type":"a","data":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}]}`,
	`{"event_type":"a","data":` + strings.Repeat("{\"a\":", 63) + "1" + strings.Repeat("}", 63) + `}`,
	`{"event_type":"a","data":` + strings.Repeat("{\"a\":", 64) + "1" + strings.Repeat("}", 64) + `}`,
}

func TestFastDecode(t *testing.T) {
	t.Parallel()
	accepted := map[string][2]bool{}
	for _, s := range fastSeeds {
		b, e := checkFast(t, []byte(s))
		accepted[s] = [2]bool{b, e}
	}
	// The plain shapes take the fast path (else it would only ever fall
	// back, and be tested for nothing).
	for _, s := range fastSeeds[:2] {
		if !accepted[s][0] {
			t.Errorf("fastBatch gave up on %q", s)
		}
	}
	for _, s := range fastSeeds[2:4] {
		if !accepted[s][1] {
			t.Errorf("fastEvent gave up on %q", s)
		}
	}
	// A batch of the most events, and one more.
	one := `{"event_type":"a","data":{"n":1}}`
	for n, want := range map[int]bool{MaxBatchEvents: true, MaxBatchEvents + 1: false} {
		body := `{"events":[` + strings.TrimSuffix(strings.Repeat(one+",", n), ",") + `]}`
		if b, _ := checkFast(t, []byte(body)); b != want {
			t.Errorf("fastBatch of %d events: %v, want %v", n, b, want)
		}
	}
}

func FuzzFastDecode(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFast(t, body) })
}
