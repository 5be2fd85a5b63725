package netguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrBlocked is wrapped by the error [Control] returns for an address that
// deliveries may not reach.
var ErrBlocked = errors.New("address blocked")

// blocked4 lists the IPv4 ranges that are not globally reachable unicast
// (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and successors).
var blocked4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", unspecified
	netip.MustParsePrefix("10.0.0.0/8"),      // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT shared space, RFC 6598
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),   // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255 broadcast
}

// blocked6 lists IPv6 ranges inside 2000::/3 (the only global unicast space)
// that are not globally reachable unicast. Everything outside 2000::/3 is
// blocked anyway, except the translation prefixes handled by embeddedV4.
var blocked6 = []netip.Prefix{
	netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID
	netip.MustParsePrefix("2001:db8::/32"), // documentation
	netip.MustParsePrefix("3fff::/20"),     // documentation, RFC 9637
}

var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")  // well-known NAT64, RFC 6052
	sixToFour      = netip.MustParsePrefix("2002::/16")     // 6to4, RFC 3056
	metadata4      = netip.MustParseAddr("169.254.169.254") // cloud metadata (inside 169.254/16)
	metadata6      = netip.MustParseAddr("fd00:ec2::254")   // AWS metadata over IPv6 (inside fc00::/7)
)

// Blocked reports whether ip is an address deliveries must not reach unless
// private networks are allowed: loopback, unspecified, private (RFC 1918, IPv6
// ULA fc00::/7), link-local, CGNAT, multicast, broadcast, reserved,
// documentation and benchmarking ranges, cloud metadata addresses, and any
// other address that is not global unicast. The zero Addr is blocked.
//
// An IPv4 address written inside IPv6 is judged by the IPv4 address it
// carries: IPv4-mapped (::ffff:a.b.c.d), the well-known NAT64 prefix
// 64:ff9b::/96 and 6to4 2002::/16. The local-use NAT64 prefix 64:ff9b:1::/48
// is blocked outright (where the IPv4 address sits inside it depends on the
// local prefix length), as are Teredo 2001::/32 (its embedded addresses are
// obfuscated and a relay decides where packets go), the discard prefix
// 100::/64, IPv4-compatible ::a.b.c.d and everything else outside 2000::/3.
func Blocked(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	// netip.Prefix.Contains never matches a zoned address: judge the address.
	ip = ip.WithZone("")
	if ip.Is4In6() {
		return Blocked(ip.Unmap())
	}
	if ip == metadata4 || ip == metadata6 {
		return true
	}
	if ip.Is4() {
		for _, p := range blocked4 {
			if p.Contains(ip) {
				return true
			}
		}
		return !ip.IsGlobalUnicast()
	}
	if v4, ok := embeddedV4(ip); ok {
		return Blocked(v4)
	}
	if !globalUnicast6.Contains(ip) {
		// Loopback, unspecified, ::/8 (IPv4-compatible, discard 100::/64 is
		// in 0100::/8), ULA, link-local, site-local, multicast, 64:ff9b:1::/48
		// and unassigned space.
		return true
	}
	for _, p := range blocked6 {
		if p.Contains(ip) {
			return true
		}
	}
	return !ip.IsGlobalUnicast()
}

// embeddedV4 returns the IPv4 address carried by a NAT64 (64:ff9b::/96) or
// 6to4 (2002::/16) address.
func embeddedV4(ip netip.Addr) (netip.Addr, bool) {
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Control returns a function for net.Dialer.ControlContext that refuses to
// connect to a [Blocked] address, with an error wrapping [ErrBlocked]. It
// sees the address actually being dialled (after DNS resolution, once per
// address tried), so a name that resolves differently at check time and at
// dial time cannot get round it. With allowPrivate every address is allowed
// (--allow-private-networks), cloud metadata addresses included.
func Control(allowPrivate bool) func(ctx context.Context, network, address string, c syscall.RawConn) error {
	if allowPrivate {
		return func(context.Context, string, string, syscall.RawConn) error { return nil }
	}
	return func(_ context.Context, network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			// Every TCP or UDP dial reaches Control with a literal IP:port;
			// anything else is refused rather than guessed at.
			return fmt.Errorf("%w: %s %q is not an IP address and port", ErrBlocked, network, address)
		}
		if Blocked(ap.Addr()) {
			return fmt.Errorf("%w: %s is not a public address", ErrBlocked, ap.Addr())
		}
		return nil
	}
}

// CheckAddr reports an error wrapping [ErrBlocked] when ip is [Blocked] and
// private networks are not allowed. It is for callers that cannot check at
// dial time (a request sent through a proxy).
func CheckAddr(ip netip.Addr, allowPrivate bool) error {
	if allowPrivate || !Blocked(ip) {
		return nil
	}
	return fmt.Errorf("%w: %s is not a public address", ErrBlocked, ip.WithZone(""))
}
