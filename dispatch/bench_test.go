package dispatch

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/webhook"
)

// benchData is a payload of about 1 KiB.
var benchData = json.RawMessage(`{"job":{"id":"job_123","status":"completed","employer":"Acme Inc","items":[` +
	strings.Repeat(`{"name":"line item","amount":1234.56,"currency":"USD"},`, 15) + `{"last":true}]}}`)

func benchEvent() *herald.Event {
	return &herald.Event{ID: herald.NewID(herald.PrefixEvent), EventType: "job.status", Version: "1.0",
		Data: benchData, CreateTime: bodyTime}
}

func BenchmarkBody(b *testing.B) {
	ev := benchEvent()
	events := make([]*herald.Event, 100)
	for i := range events {
		events[i] = ev
	}
	for _, bc := range []struct {
		name   string
		format string
		batch  bool
	}{
		{"envelope", herald.FormatEnvelope, false},
		{"flat", herald.FormatFlat, false},
		{"batch100", herald.FormatEnvelope, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sub := &herald.Subscription{PayloadFormat: bc.format, IncludePayload: true}
			b.ReportAllocs()
			var n int
			for b.Loop() {
				var body []byte
				if bc.batch {
					body = appendBatch(make([]byte, 0, bodySize(sub, events)), sub, events, sendTime)
				} else {
					body = appendEvent(make([]byte, 0, bodySize(sub, events[:1])), sub, ev)
				}
				n = len(body)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkRequest builds a whole request: body, encryption, signature,
// headers.
func BenchmarkRequest(b *testing.B) {
	d, err := New(Config{Store: newFakeStore()})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		scheme  string
		encrypt bool
	}{
		{"standard", webhook.SchemeStandard, false},
		{"standard+encrypt", webhook.SchemeStandard, true},
		{"sha512-hex", webhook.SchemeSHA512Hex, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sub := testSub("https://endpoint.example/hook")
			sub.SignatureScheme = bc.scheme
			if bc.scheme != webhook.SchemeStandard {
				sub.Secrets = []herald.Secret{{Value: strings.Repeat("ab", 32)}}
			}
			if bc.encrypt {
				sub.EncryptionKey = []byte("0123456789abcdef0123456789abcdef")
			}
			j := singleJob(&sub, string(benchData))
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := d.request(&sub, j, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
