package herald

import (
	"regexp"
	"strings"
)

// MaxEventIDLen is the longest event id accepted.
const MaxEventIDLen = 255

var (
	tenantIDRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	eventTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}$`)
)

// ValidTenantID reports whether id matches ^[a-z0-9][a-z0-9_-]{0,62}$.
func ValidTenantID(id string) bool { return tenantIDRE.MatchString(id) }

// ValidEventType reports whether t is an acceptable event type: letters,
// digits and "_.:/-", starting with a letter or digit, at most 255 bytes.
func ValidEventType(t string) bool { return eventTypeRE.MatchString(t) }

// ValidPattern reports whether p is a subscription's event pattern: "*", an
// exact event type, or a prefix ending in ".*" or "-*".
func ValidPattern(p string) bool {
	if p == "*" {
		return true
	}
	if prefix, ok := PatternPrefix(p); ok {
		return ValidEventType(prefix[:len(prefix)-1])
	}
	return ValidEventType(p)
}

// PatternPrefix returns the prefix a wildcard pattern matches ("job." for
// "job.*", "user-" for "user-*", "" for "*") and true, or false for an exact type.
func PatternPrefix(p string) (string, bool) {
	if p == "*" {
		return "", true
	}
	if strings.HasSuffix(p, ".*") || strings.HasSuffix(p, "-*") {
		return p[:len(p)-1], true
	}
	return "", false
}

// PatternKey is how a subscription pattern is stored for lookup, and how
// fan-out looks the patterns of an event up: Kind "all" (Value ""),
// "exact" (Value the type) or "prefix" (Value the prefix, "job." for
// "job.*").
type PatternKey struct{ Kind, Value string }

// KeyOf returns the key of pattern p.
func KeyOf(p string) PatternKey {
	prefix, ok := PatternPrefix(p)
	switch {
	case !ok:
		return PatternKey{"exact", p}
	case prefix == "":
		return PatternKey{"all", ""}
	}
	return PatternKey{"prefix", prefix}
}

// TypeKeys returns the keys of every pattern that matches event type t:
// "all", t exactly, and each of its TypePrefixes. Matches(p, t) holds
// exactly when KeyOf(p) is one of them.
func TypeKeys(t string) []PatternKey {
	keys := append(make([]PatternKey, 0, 4), PatternKey{"all", ""}, PatternKey{"exact", t})
	for _, p := range TypePrefixes(t) {
		keys = append(keys, PatternKey{"prefix", p})
	}
	return keys
}

// TypePrefixes returns the prefixes of event type t that a wildcard pattern
// can stand for: each ending at a '.' or '-' ("a.", "a.b-" for "a.b-c"). A
// pattern with prefix P matches t exactly when P is "" or one of these, so
// fan-out looks patterns up by these keys instead of testing every pattern.
func TypePrefixes(t string) []string {
	var out []string
	for i := 0; i < len(t); i++ {
		if t[i] == '.' || t[i] == '-' {
			out = append(out, t[:i+1])
		}
	}
	return out
}

// Matches reports whether event type t matches pattern p.
func Matches(p, t string) bool {
	if prefix, ok := PatternPrefix(p); ok {
		return strings.HasPrefix(t, prefix)
	}
	return p == t
}
