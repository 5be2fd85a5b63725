package netguard

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// mustBlock lists, independently of netguard.go, ranges every address of
// which must be blocked (CONTRACT.md §7 and the IANA special-purpose
// registries).
var mustBlock = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"), // judged by the IPv4 inside, see below
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// FuzzClassify checks Blocked against an independent list of ranges, and
// checks that Control, CheckAddr and Blocked agree on every address: Control
// refuses "ip:port" exactly when Blocked(ip), with ErrBlocked, and allows
// everything when private networks are allowed. IPv4 carried in IPv6
// (mapped, NAT64, 6to4) is judged as the IPv4 address.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "8.8.8.8", "100.64.0.1", "::ffff:10.0.0.1", "64:ff9b::808:808",
		"64:ff9b::a00:1", "2002:808:808::", "2002:a9fe:a9fe::", "fd00:ec2::254", "2606:4700::1", "fe80::1"} {
		f.Add(netip.MustParseAddr(s).AsSlice(), uint16(443))
	}
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		got := Blocked(ip)
		for _, p := range mustBlock {
			if p.Contains(ip) && p.Bits() != 96 && !got {
				t.Fatalf("Blocked(%s) = false, but it is in %s", ip, p)
			}
		}
		var v4 netip.Addr
		b16 := ip.As16()
		switch {
		case ip.Is4In6():
			v4 = ip.Unmap()
		case ip.Is6() && netip.MustParsePrefix("64:ff9b::/96").Contains(ip):
			v4 = netip.AddrFrom4([4]byte(b16[12:16]))
		case ip.Is6() && netip.MustParsePrefix("2002::/16").Contains(ip):
			v4 = netip.AddrFrom4([4]byte(b16[2:6]))
		}
		if v4.IsValid() && Blocked(v4) != got {
			t.Fatalf("Blocked(%s) = %v but Blocked(%s) = %v: an IPv4 address written in IPv6 is judged differently", ip, got, v4, !got)
		}

		addr := netip.AddrPortFrom(ip, port).String()
		err := Control(false)(context.Background(), "tcp", addr, nil)
		if got != (err != nil) || err != nil && !errors.Is(err, ErrBlocked) {
			t.Fatalf("Blocked(%s) = %v but Control(false)(%q) = %v", ip, got, addr, err)
		}
		if err := Control(true)(context.Background(), "tcp", addr, nil); err != nil {
			t.Fatalf("Control(true)(%q) = %v, want nil", addr, err)
		}
		if cerr := CheckAddr(ip, false); got != (cerr != nil) || cerr != nil && !errors.Is(cerr, ErrBlocked) {
			t.Fatalf("Blocked(%s) = %v but CheckAddr = %v", ip, got, cerr)
		}
	})
}
