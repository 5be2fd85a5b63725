package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/netguard"
)

// secDepth returns the deepest nesting of a valid JSON text, read with
// encoding/json's own tokenizer.
func secDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// secStrictDecode decodes b into an eventInput the plain way: one value,
// no unknown field, nothing after it.
func secStrictDecode(b []byte) error {
	var in eventInput
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the value")
	}
	return nil
}

// FuzzPublishDecode feeds arbitrary bodies to the decoder of POST /events
// and the validation that follows. It never panics; a body is accepted by
// decodeJSON exactly when it is valid JSON, nested at most maxJSONDepth
// deep, that decodes strictly into an event; every refusal is a
// ValidationError naming a field; and an event that passes validation has a
// valid id, type and version, compact valid JSON data, a microsecond UTC
// time and a hash that depends only on the request.
func FuzzPublishDecode(f *testing.F) {
	for _, s := range []string{
		`{"event_type":"job.status","data":{"job":{}}}`,
		`{"id":"e1","event_type":"a","version":"2","data":[1,2,{"x":null}],"create_time":"2024-01-02T15:04:05.123456789Z","test":true}`,
		`{"event_type":"a","data":"` + strings.Repeat("[", 70) + `"}`,
		`{"event_type":"a","data":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`,
		`{"event_type":"a","data":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`,
		`{"event_type":"a","nope":1}`,
		`{"event_type":"a"} {}`,
		`{"event_type":"a","data":"\"[[["}`,
		`{"event_type":"a","id":"` + strings.Repeat("x", 256) + `"}`,
		`{"event_type":"a","id":"with space"}`,
		`{"event_type":"a","version":""}`,
		`{"event_type":"a","create_time":"yesterday"}`,
		`{"event_type":1}`,
		`null`, `[]`, `"x"`, ``, `   `, `{`, `{"data":}`,
		"{\"event_type\":\"a\",\"data\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var in eventInput
		err := decodeJSON(body, &in, "")
		want := json.Valid(body) && secDepth(body) <= maxJSONDepth && secStrictDecode(body) == nil
		if (err == nil) != want {
			t.Fatalf("decodeJSON(%q) = %v, but valid=%v depth=%d strict=%v",
				body, err, json.Valid(body), secDepth(body), secStrictDecode(body))
		}
		if err != nil {
			secValidation(t, body, err)
			return
		}
		req, err := eventRequest("t1", &in, "", now)
		if err != nil {
			secValidation(t, body, err)
			return
		}
		ev := req.Event
		switch {
		case ev.TenantID != "t1":
			t.Fatalf("tenant %q", ev.TenantID)
		case checkEventID(ev.ID) != nil:
			t.Fatalf("accepted id %q", ev.ID)
		case !herald.ValidEventType(ev.EventType):
			t.Fatalf("accepted event_type %q", ev.EventType)
		case ev.Version == "" || len(ev.Version) > maxVersionLen || !printableASCII(ev.Version):
			t.Fatalf("accepted version %q", ev.Version)
		case ev.Data != nil && !json.Valid(ev.Data):
			t.Fatalf("data %q is not valid JSON", ev.Data)
		case ev.CreateTime.Location() != time.UTC || !ev.CreateTime.Equal(ev.CreateTime.Truncate(time.Microsecond)):
			t.Fatalf("create_time %v is not UTC to the microsecond", ev.CreateTime)
		case len(ev.Hash) != 32:
			t.Fatalf("hash of %d bytes", len(ev.Hash))
		}
		if ev.Data != nil {
			var compact bytes.Buffer
			if err := json.Compact(&compact, ev.Data); err != nil || !bytes.Equal(compact.Bytes(), ev.Data) {
				t.Fatalf("data %q is not compact", ev.Data)
			}
			if secDepth(ev.Data) >= maxJSONDepth {
				t.Fatalf("data nested %d deep inside an event", secDepth(ev.Data))
			}
		}
		// The same request, decoded again, has the same hash: a repeat is
		// recognised (unless the id was generated).
		var again eventInput
		if err := decodeJSON(body, &again, ""); err != nil {
			t.Fatalf("second decode: %v", err)
		}
		req2, err := eventRequest("t1", &again, "", now)
		if err != nil {
			t.Fatalf("second validation: %v", err)
		}
		if in.ID != nil && !bytes.Equal(req2.Event.Hash, ev.Hash) {
			t.Fatalf("the same request hashes differently")
		}
	})
}

func secValidation(t *testing.T, body []byte, err error) {
	t.Helper()
	ve, ok := errors.AsType[*herald.ValidationError](err)
	if !ok || ve.Field == "" || ve.Reason == "" {
		t.Fatalf("body %q: error %v (%T) is not a ValidationError naming a field", body, err, err)
	}
}

// TestBlockedAddrMatchesGuard checks that the API refuses, at creation, every
// address literal the dialer's guard would refuse at delivery (issue item 5:
// "literal blocked addresses are also refused at creation with 400"), and no
// address the guard allows.
func TestBlockedAddrMatchesGuard(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		// The forms of the issue: all agree.
		"127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fd00:ec2::254",
		"100.64.0.1", "0.0.0.0", "64:ff9b::7f00:1", "2002:7f00:1::", "8.8.8.8", "2606:4700:4700::1111",
		// Blocked by the guard but accepted by the API's own list.
		"192.88.99.1",  // deprecated 6to4 relay anycast
		"3fff::1",      // documentation, RFC 9637
		"::8.8.8.8",    // IPv4-compatible, deprecated
		"4000::1",      // outside 2000::/3, unassigned
		"1234:5678::1", // unassigned
	} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			ip := netip.MustParseAddr(s)
			if got, want := blockedAddr(ip), netguard.Blocked(ip); got != want {
				t.Errorf("blockedAddr(%s) = %v, but the dialer's guard says %v", s, got, want)
			}
		})
	}
}

// FuzzBlockedAddr checks that the API's check at creation and the dialer's
// guard agree on every address.
func FuzzBlockedAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "8.8.8.8", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a9fe:a9fe::",
		"fd00:ec2::254", "2606:4700::1", "fe80::1"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if got, want := blockedAddr(ip), netguard.Blocked(ip); got != want {
			t.Fatalf("blockedAddr(%s) = %v, but the dialer's guard says %v", ip, got, want)
		}
	})
}
