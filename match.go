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

// Matches reports whether event type t matches pattern p.
func Matches(p, t string) bool {
	if prefix, ok := PatternPrefix(p); ok {
		return strings.HasPrefix(t, prefix)
	}
	return p == t
}
