package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

// maxJSONDepth is the deepest nesting of objects and arrays accepted in a
// request body.
const maxJSONDepth = 64

// maxBodyBytes bounds bodies of requests other than publishing.
const maxBodyBytes = 256 << 10

// readBody checks that a request body is JSON and reads at most limit bytes
// of it; more answers 413. An absent body reads as empty.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
			return nil, &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
				msg: fmt.Sprintf("Content-Type %q is not JSON: send application/json", ct)}
		}
	}
	if r.ContentLength > limit {
		return nil, errTooLarge(fmt.Sprintf("request body of %d bytes is larger than the limit of %d bytes", r.ContentLength, limit))
	}
	var body []byte
	var err error
	if r.ContentLength > 0 {
		// One allocation of the announced size instead of io.ReadAll's
		// doublings (a batch body is up to megabytes).
		body = make([]byte, r.ContentLength)
		var n int
		n, err = io.ReadFull(http.MaxBytesReader(w, r.Body, limit), body)
		body = body[:n]
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge(fmt.Sprintf("request body is larger than the limit of %d bytes", limit))
		}
		return nil, herald.Invalid("body", "could not be read")
	}
	return body, nil
}

// decodeJSON decodes body strictly into v: it must be one JSON value,
// nested at most maxJSONDepth deep, with no field v does not have. Errors
// name the field, prefixed with prefix (such as "events[3].").
func decodeJSON(body []byte, v any, prefix string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return herald.Invalid(fieldName(prefix, ""), "required: a JSON object")
	}
	if err := checkDepth(body); err != nil {
		return herald.Invalid(fieldName(prefix, ""), "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, prefix)
	}
	if _, err := dec.Token(); err != io.EOF {
		return herald.Invalid(fieldName(prefix, ""), "unexpected data after the JSON value")
	}
	return nil
}

// decodeOptional is decodeJSON for a body that may be absent.
func decodeOptional(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return decodeJSON(body, v, "")
}

// fieldName joins a prefix such as "events[3]." and a field; with no field
// it names the prefix's element, or "body".
func fieldName(prefix, field string) string {
	switch {
	case field != "":
		return prefix + field
	case prefix != "":
		return strings.TrimSuffix(prefix, ".")
	default:
		return "body"
	}
}

// decodeError turns an encoding/json error into a ValidationError naming the
// field.
func decodeError(err error, prefix string) error {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return herald.Invalid(fieldName(prefix, te.Field), "must be %s", describeType(te.Type))
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return herald.Invalid(fieldName(prefix, ""), "invalid JSON at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return herald.Invalid(fieldName(prefix, ""), "truncated JSON")
	}
	// encoding/json reports an unknown field only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return herald.Invalid(fieldName(prefix, name), "unknown field")
	}
	return herald.Invalid(fieldName(prefix, ""), "invalid JSON")
}

func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return "a JSON value"
	}
}

// checkDepth reports JSON nested deeper than maxJSONDepth, scanning the raw
// bytes before any decoding allocates for them.
func checkDepth(b []byte) error {
	depth := 0
	var st stringState
	for _, c := range b {
		if !st.outside(c) {
			continue
		}
		switch c {
		case '{', '[':
			depth++
			if depth > maxJSONDepth {
				return fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// stringState follows, byte by byte, whether JSON text is inside a string.
type stringState struct{ in, escaped bool }

// outside takes the next byte and reports whether it is outside every
// string: structure or whitespace. Quotes count as inside.
func (s *stringState) outside(c byte) bool {
	switch {
	case s.in:
		switch {
		case s.escaped:
			s.escaped = false
		case c == '\\':
			s.escaped = true
		case c == '"':
			s.in = false
		}
		return false
	case c == '"':
		s.in = true
		return false
	}
	return true
}

// pageParam reads ?limit= and ?cursor=. A limit above MaxPageLimit is
// clamped to it.
func pageParam(q url.Values) (herald.Page, error) {
	p := herald.Page{Limit: herald.DefaultPageLimit, Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, herald.Invalid("limit", "must be a positive integer, got %q", v)
		}
		p.Limit = min(n, herald.MaxPageLimit)
	}
	if len(p.Cursor) > 1024 {
		return p, herald.Invalid("cursor", "is not a cursor this API returned")
	}
	return p, nil
}

// timeParam parses an RFC 3339 time, in the query or a body field.
func timeParam(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, herald.Invalid(name, "must be an RFC 3339 time like \"2024-01-02T15:04:05Z\", got %q", v)
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// listOut is a page of a list.
type listOut[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func list[T, S any](items []S, next string, render func(S) T) listOut[T] {
	out := listOut[T]{Data: make([]T, 0, len(items)), NextCursor: next}
	for _, it := range items {
		out.Data = append(out.Data, render(it))
	}
	return out
}

// writeJSON writes v as the JSON body of a status answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own output types are marshalled; they always encode.
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// fmtTime formats t with herald.FormatTime, or "" when t is zero.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return herald.FormatTime(t)
}
