package dispatch

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
)

// Bodies are built by appending to one byte slice: the event data is already
// JSON (json.RawMessage), so it is copied as it is, never decoded, except for
// payload_format "flat" when the data may hold Herald's own field names.

// appendEvent appends one event as the subscription formats it (CONTRACT.md
// §5.1): the envelope, or with payload_format "flat" and data that is a JSON
// object, that object with "id" and "event_type" first. With include_payload
// false there is no data, so the envelope is sent without it.
func appendEvent(dst []byte, sub *herald.Subscription, ev *herald.Event) []byte {
	if sub.IncludePayload && sub.PayloadFormat == herald.FormatFlat {
		if obj, ok := objectBody(ev.Data); ok {
			return appendFlat(dst, ev, obj)
		}
	}
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, ev.ID)
	dst = append(dst, `,"create_time":"`...)
	dst = herald.AppendTime(dst, ev.CreateTime)
	dst = append(dst, `","event_type":`...)
	dst = appendString(dst, ev.EventType)
	dst = append(dst, `,"version":`...)
	dst = appendString(dst, ev.Version)
	if sub.IncludePayload && len(ev.Data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, bytes.TrimSpace(ev.Data)...)
	}
	return append(dst, '}')
}

// objectBody returns what follows the opening brace of a JSON object (its
// members and the closing brace), or false if data is not an object.
func objectBody(data json.RawMessage) ([]byte, bool) {
	data = bytes.TrimSpace(data)
	if len(data) < 2 || data[0] != '{' {
		return nil, false
	}
	return bytes.TrimSpace(data[1:]), true
}

// appendFlat appends the data object obj (the part after its '{') with "id"
// and "event_type" first. Members of the data with either name give way to
// Herald's; the others are copied as they are, in their order.
func appendFlat(dst []byte, ev *herald.Event, obj []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, ev.ID)
	dst = append(dst, `,"event_type":`...)
	dst = appendString(dst, ev.EventType)
	mark := len(dst)
	out, ok := appendMembers(dst, obj)
	if !ok {
		// Stored data is validated JSON, so this should not happen; the
		// members are then copied whole rather than dropped.
		out = append(append(dst[:mark], ','), obj...)
		return out
	}
	return append(out, '}')
}

// appendMembers scans the members of a JSON object (obj is what follows its
// '{') and appends ,"key":value for each whose key is not "id" or
// "event_type". It reports false if obj is not well formed.
func appendMembers(dst, obj []byte) ([]byte, bool) {
	i := skipSpace(obj, 0)
	if i < len(obj) && obj[i] == '}' {
		return dst, true
	}
	for i < len(obj) {
		if obj[i] != '"' {
			return dst, false
		}
		keyStart := i
		if i = skipString(obj, i); i < 0 {
			return dst, false
		}
		key := obj[keyStart:i]
		if i = skipSpace(obj, i); i >= len(obj) || obj[i] != ':' {
			return dst, false
		}
		valStart := skipSpace(obj, i+1)
		if i = skipValue(obj, valStart); i < 0 {
			return dst, false
		}
		val := bytes.TrimRight(obj[valStart:i], " \t\r\n")
		if len(val) == 0 {
			return dst, false
		}
		if !heraldKey(key) {
			dst = append(dst, ',')
			dst = append(dst, key...)
			dst = append(dst, ':')
			dst = append(dst, val...)
		}
		switch obj[i] {
		case '}':
			return dst, true
		case ',':
			i = skipSpace(obj, i+1)
		}
	}
	return dst, false
}

// heraldKey reports whether a raw JSON key names one of Herald's fields.
func heraldKey(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == `"id"` || string(raw) == `"event_type"`
	}
	var k string
	if json.Unmarshal(raw, &k) != nil {
		return false
	}
	return k == "id" || k == "event_type"
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i] ('"'),
// or -1 if it does not end.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index of the ',' or '}' that ends the value starting
// at b[i], or -1.
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			if i = skipString(b, i); i < 0 {
				return -1
			}
			continue
		case '{', '[':
			depth++
		case ']':
			depth--
		case '}':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return -1
}

// appendBatch appends the body of a batch (CONTRACT.md §5.1):
// {"timestamp": <send time>, "data": [<event>, ...]}.
func appendBatch(dst []byte, sub *herald.Subscription, events []*herald.Event, sent time.Time) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = herald.AppendTime(dst, sent)
	dst = append(dst, `","data":[`...)
	for i, ev := range events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendEvent(dst, sub, ev)
	}
	return append(dst, "]}"...)
}

// bodySize estimates the size of a body, to allocate it once.
func bodySize(sub *herald.Subscription, events []*herald.Event) int {
	n := 64
	for _, ev := range events {
		n += 128 + len(ev.ID) + len(ev.EventType) + len(ev.Version)
		if sub.IncludePayload {
			n += len(ev.Data)
		}
	}
	return n
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// except that <, > and & are left as they are. Invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end lines in JavaScript.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
