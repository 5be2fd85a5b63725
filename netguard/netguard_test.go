package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestBlocked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		// IPv4 public
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"100.63.255.255", false},
		{"100.128.0.0", false},
		{"172.15.255.255", false},
		{"172.32.0.0", false},
		{"198.17.255.255", false},
		{"198.20.0.0", false},
		{"223.255.255.255", false},
		// IPv4 blocked
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"10.0.0.1", true},
		{"100.64.0.1", true},
		{"100.127.255.254", true},
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"169.254.0.1", true},
		{"169.254.169.254", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.0.0.8", true},
		{"192.0.2.1", true},
		{"192.88.99.1", true},
		{"192.168.1.1", true},
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"198.51.100.7", true},
		{"203.0.113.9", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		// IPv6 public
		{"2606:4700:4700::1111", false},
		{"2a00:1450:4001:81b::200e", false},
		{"2001:4860:4860::8888", false},
		// IPv6 blocked
		{"::", true},
		{"::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"febf::1", true},
		{"fec0::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fd00:ec2::254", true},
		{"ff02::1", true},
		{"ff0e::1", true},
		{"2001:db8::1", true},
		{"2001:db8:ffff::1", true},
		{"3fff::1", true},
		{"2001::1", true},             // Teredo
		{"2001:0:4136:e378::1", true}, // Teredo
		{"2001:2::1", true},           // benchmarking
		{"100::1", true},              // discard
		{"100::ffff:1", true},         // discard
		{"::127.0.0.1", true},         // IPv4-compatible (deprecated)
		{"::8.8.8.8", true},           // IPv4-compatible (deprecated)
		{"64:ff9b:1::808:808", true},  // local-use NAT64: blocked outright
		{"4000::1", true},             // unassigned, outside 2000::/3
		{"::ffff:0:808:808", true},    // IPv4-translated, in ::/8
		{"1234:5678::1", true},        // unassigned
		// IPv4 inside IPv6: judged by the IPv4 address
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.1.2.3", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::127.0.0.1", true},
		{"64:ff9b::192.168.0.1", true},
		{"64:ff9b::a9fe:a9fe", true}, // 169.254.169.254
		{"64:ff9b::8.8.8.8", false},
		{"2002:7f00:1::1", true},    // 6to4 of 127.0.0.1
		{"2002:a00:1::", true},      // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::1", true}, // 6to4 of 169.254.169.254
		{"2002:808:808::1", false},  // 6to4 of 8.8.8.8
		{"2001:4860:4860::8888%eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			ip := netip.MustParseAddr(tt.addr)
			if got := Blocked(ip); got != tt.want {
				t.Errorf("Blocked(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
	t.Run("zero Addr", func(t *testing.T) {
		t.Parallel()
		if !Blocked(netip.Addr{}) {
			t.Error("Blocked(netip.Addr{}) = false, want true")
		}
	})
}

func TestControl(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		address      string
		allowPrivate bool
		wantBlocked  bool
	}{
		{"public v4", "8.8.8.8:443", false, false},
		{"public v6", "[2606:4700:4700::1111]:443", false, false},
		{"loopback", "127.0.0.1:80", false, true},
		{"loopback v6", "[::1]:80", false, true},
		{"mapped loopback", "[::ffff:127.0.0.1]:80", false, true},
		{"metadata", "169.254.169.254:80", false, true},
		{"not an address", "example.com:80", false, true},
		{"loopback allowed", "127.0.0.1:80", true, false},
		{"metadata allowed", "169.254.169.254:80", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Control(tt.allowPrivate)(context.Background(), "tcp", tt.address, nil)
			if got := errors.Is(err, ErrBlocked); got != tt.wantBlocked {
				t.Errorf("Control(%v)(%q) = %v, want blocked %v", tt.allowPrivate, tt.address, err, tt.wantBlocked)
			}
			if !tt.wantBlocked && err != nil {
				t.Errorf("unexpected error %v", err)
			}
		})
	}
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	if err := CheckAddr(netip.MustParseAddr("10.0.0.1"), false); !errors.Is(err, ErrBlocked) {
		t.Errorf("CheckAddr(10.0.0.1, false) = %v, want ErrBlocked", err)
	}
	if err := CheckAddr(netip.MustParseAddr("10.0.0.1"), true); err != nil {
		t.Errorf("CheckAddr(10.0.0.1, true) = %v, want nil", err)
	}
	if err := CheckAddr(netip.MustParseAddr("8.8.8.8"), false); err != nil {
		t.Errorf("CheckAddr(8.8.8.8, false) = %v, want nil", err)
	}
}

// TestDialRefused dials a real listener on loopback through a guarded dialer:
// the connection must be refused before it is made, so the listener never
// accepts anything.
func TestDialRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 5 * time.Second, ControlContext: Control(false)}
	// A name that resolves to loopback is refused too: the check is on the
	// dialled address, not the name.
	for _, addr := range []string{ln.Addr().String(), "localhost:" + portOf(t, ln.Addr())} {
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s: connected, want refusal", addr)
		}
		if !errors.Is(err, ErrBlocked) {
			t.Fatalf("dial %s: %v, want ErrBlocked", addr, err)
		}
	}
	select {
	case <-accepted:
		t.Fatal("the listener accepted a connection")
	default:
	}

	allowed := net.Dialer{Timeout: 5 * time.Second, ControlContext: Control(true)}
	c, err := allowed.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial with private networks allowed: %v", err)
	}
	c.Close()
}

func portOf(tb testing.TB, a net.Addr) string {
	tb.Helper()
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// FuzzBlocked checks Blocked against the standard library's predicates: an
// address netip calls loopback, private, link-local, multicast, unspecified
// or not global unicast is always blocked; an IPv4 address and its IPv4-mapped
// IPv6 form are judged alike; and a zone never changes the answer.
func FuzzBlocked(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "8.8.8.8", "10.0.0.1", "::1", "fe80::1", "fd00:ec2::254",
		"::ffff:169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::", "2001:db8::1", "2606:4700::1"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		got := Blocked(ip)
		std := ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
			ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsGlobalUnicast()
		if std && !got {
			t.Errorf("Blocked(%s) = false, but netip says it is not a public unicast address", ip)
		}
		if ip.Is4() {
			mapped := netip.AddrFrom16(ip.As16())
			if Blocked(mapped) != got {
				t.Errorf("Blocked(%s) = %v but Blocked(%s) = %v", ip, got, mapped, !got)
			}
		}
		if ip.Is6() && Blocked(ip.WithZone("eth0")) != got {
			t.Errorf("a zone changes Blocked(%s)", ip)
		}
	})
}
