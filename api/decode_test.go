package api

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckDepth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"flat", `{"a": 1}`, true},
		{"at the limit", strings.Repeat("[", 64) + strings.Repeat("]", 64), true},
		{"over the limit", strings.Repeat("[", 65) + strings.Repeat("]", 65), false},
		{"brackets in strings", `{"a": "` + strings.Repeat("[{", 100) + `"}`, true},
		{"escaped quote", `{"a": "\"` + strings.Repeat("[", 100) + `"}`, true},
		{"escaped backslash", `{"a": "\\", "b": ` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := checkDepth([]byte(tt.in)); (err == nil) != tt.ok {
				t.Errorf("checkDepth: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestBlockedAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		blocked bool
	}{
		{"8.8.8.8", false},
		{"2606:4700:4700::1111", false},
		{"127.0.0.1", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"192.168.0.1", true},
		{"169.254.169.254", true},
		{"100.64.0.1", true},
		{"0.0.0.0", true},
		{"255.255.255.255", true},
		{"224.0.0.1", true},
		{"198.18.0.1", true},
		{"::", true},
		{"::1", true},
		{"fe80::1%eth0", true},
		{"fc00::1", true},
		{"ff02::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::a00:1", true},    // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
		{"2002:7f00:1::", true},     // 6to4 of 127.0.0.1
		{"2001:db8::1", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			if got := blockedAddr(netip.MustParseAddr(tt.addr)); got != tt.blocked {
				t.Errorf("blockedAddr(%s) = %v, want %v", tt.addr, got, tt.blocked)
			}
		})
	}
}

func TestDefaultSecrets(t *testing.T) {
	t.Parallel()
	for _, scheme := range knownSchemes {
		s, err := defaultGenerateSecret(scheme)
		if err != nil {
			t.Fatal(err)
		}
		if err := defaultValidSecret(scheme, s); err != nil {
			t.Errorf("%s: generated secret %q is not valid: %v", scheme, s, err)
		}
		if scheme != "standard" && len(s) != 64 {
			t.Errorf("%s: generated secret %q, want 64 hex characters", scheme, s)
		}
	}
	for _, bad := range []string{"", "whsec_", "whsec_!!", "abc", "whsec_" + strings.Repeat("A", 8)} {
		if defaultValidSecret("standard", bad) == nil {
			t.Errorf("standard secret %q accepted", bad)
		}
	}
}
