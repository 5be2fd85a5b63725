package api

import "bytes"

// The publish bodies are decoded in one pass by a small parser for the shape
// they nearly always have, instead of encoding/json's several (a depth scan,
// a decode into raw elements, a decode of each element and a compaction of
// its data). The parser accepts only plain input: the fields by their exact
// names, each once; ids, types, versions and times as ASCII strings without
// escapes; any valid JSON as data. Anything else, valid or not, makes it
// give up, and decodeJSON's strict path decodes the body instead and names
// what is wrong. So it never accepts a body the strict path refuses, nor
// reads one differently (FuzzFastDecode holds it to that).

// sizedEvent is one decoded event and the length of its JSON text.
type sizedEvent struct {
	in   eventInput
	size int
}

// fastParser reads b from i. Its methods report false to give up.
type fastParser struct {
	b     []byte
	i     int
	depth int // objects and arrays open
}

// fastBatch decodes {"events": [event, ...]} with 1 to MaxBatchEvents events.
func fastBatch(body []byte) ([]sizedEvent, bool) {
	p := &fastParser{b: body}
	if !p.open('{') || !p.key("events") || !p.open('[') {
		return nil, false
	}
	evs := make([]sizedEvent, 0, 16)
	for {
		if len(evs) == MaxBatchEvents {
			return nil, false
		}
		p.ws()
		start := p.i
		var ev sizedEvent
		if !p.event(&ev.in) {
			return nil, false
		}
		ev.size = p.i - start
		evs = append(evs, ev)
		p.ws()
		if p.eat(']') {
			break
		}
		if !p.eat(',') {
			return nil, false
		}
	}
	p.depth--
	p.ws()
	if !p.eat('}') {
		return nil, false
	}
	p.ws()
	return evs, p.i == len(p.b)
}

// fastEvent decodes a body that is one event object.
func fastEvent(body []byte) (eventInput, bool) {
	p := &fastParser{b: body}
	var in eventInput
	p.ws()
	if !p.event(&in) {
		return eventInput{}, false
	}
	p.ws()
	return in, p.i == len(p.b)
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// open reads whitespace and then c, an opening bracket.
func (p *fastParser) open(c byte) bool {
	p.ws()
	if !p.eat(c) {
		return false
	}
	p.depth++
	return p.depth <= maxJSONDepth
}

// key reads a member name that must be want, and its colon.
func (p *fastParser) key(want string) bool {
	p.ws()
	k, ok := p.plainString()
	if !ok || k != want {
		return false
	}
	p.ws()
	return p.eat(':')
}

// plainString reads a string of printable ASCII without escapes.
func (p *fastParser) plainString() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return "", false
		}
		p.i++
	}
	return "", false
}

// optString reads a plain string or null (nil).
func (p *fastParser) optString() (*string, bool) {
	if p.literal("null") {
		return nil, true
	}
	s, ok := p.plainString()
	return &s, ok
}

func (p *fastParser) literal(lit string) bool {
	if bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		p.i += len(lit)
		return true
	}
	return false
}

// event reads one event object into in.
func (p *fastParser) event(in *eventInput) bool {
	if !p.open('{') {
		return false
	}
	var seen [6]bool
	p.ws()
	if p.eat('}') {
		p.depth--
		return true
	}
	for {
		p.ws()
		name, ok := p.plainString()
		if !ok {
			return false
		}
		p.ws()
		if !p.eat(':') {
			return false
		}
		p.ws()
		f := -1
		switch name {
		case "id":
			f = 0
			in.ID, ok = p.optString()
		case "event_type":
			f = 1
			in.EventType, ok = p.optString()
		case "version":
			f = 2
			in.Version, ok = p.optString()
		case "create_time":
			f = 3
			in.CreateTime, ok = p.optString()
		case "test":
			f = 4
			switch {
			case p.literal("null"):
				in.Test = nil
			case p.literal("true"):
				t := true
				in.Test = &t
			case p.literal("false"):
				t := false
				in.Test = &t
			default:
				ok = false
			}
		case "data":
			f = 5
			start := p.i
			var spaced bool
			if ok, spaced = p.value(); ok {
				in.Data, in.compact = p.b[start:p.i], true
				if spaced {
					in.Data = compactJSON(in.Data)
				}
			}
		}
		if f < 0 || !ok || seen[f] {
			return false
		}
		seen[f] = true
		p.ws()
		if p.eat('}') {
			p.depth--
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

// value reads any JSON value, and reports whether it holds whitespace
// outside its strings.
func (p *fastParser) value() (ok, spaced bool) {
	if p.i >= len(p.b) {
		return false, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return p.str(), false
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.depth++
		if p.depth > maxJSONDepth {
			return false, false
		}
		if p.skipWS() {
			spaced = true
		}
		if p.eat(closer) {
			p.depth--
			return true, spaced
		}
		for {
			if c == '{' {
				if !p.str() {
					return false, false
				}
				if p.skipWS() {
					spaced = true
				}
				if !p.eat(':') {
					return false, false
				}
				if p.skipWS() {
					spaced = true
				}
			}
			ok, sp := p.value()
			if !ok {
				return false, false
			}
			if p.skipWS() || sp {
				spaced = true
			}
			if p.eat(closer) {
				p.depth--
				return true, spaced
			}
			if !p.eat(',') {
				return false, false
			}
			if p.skipWS() {
				spaced = true
			}
		}
	case c == 't':
		return p.literal("true"), false
	case c == 'f':
		return p.literal("false"), false
	case c == 'n':
		return p.literal("null"), false
	default:
		return p.number(), false
	}
}

// skipWS skips whitespace and reports whether there was any.
func (p *fastParser) skipWS() bool {
	start := p.i
	p.ws()
	return p.i > start
}

// str reads a JSON string: no control characters, valid escapes.
func (p *fastParser) str() bool {
	if !p.eat('"') {
		return false
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		p.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if p.i >= len(p.b) {
				return false
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if p.i+4 > len(p.b) {
					return false
				}
				for _, h := range p.b[p.i : p.i+4] {
					if !isHex(h) {
						return false
					}
				}
				p.i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *fastParser) number() bool {
	p.eat('-')
	switch {
	case p.eat('0'):
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.eat('.') && !p.digits() {
		return false
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more digits.
func (p *fastParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// compactJSON drops the whitespace outside strings of valid JSON.
func compactJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	var st stringState
	for _, c := range b {
		if st.outside(c) && (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue
		}
		out = append(out, c)
	}
	return out
}
