package netguard

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rebindDNS is a DNS server on 127.0.0.1 that answers the first A query
// with a public address and every later one with 127.0.0.1: a rebinding
// attacker's name server, which passes a check made before the request and
// points the connection itself at loopback.
type rebindDNS struct {
	pc      net.PacketConn
	public  netip.Addr
	queries atomic.Int32 // A queries answered
}

func newRebindDNS(tb testing.TB, public netip.Addr) *rebindDNS {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &rebindDNS{pc: pc, public: public}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.serve()
	}()
	tb.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return s
}

func (s *rebindDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.answer(buf[:n]); resp != nil {
			_, _ = s.pc.WriteTo(resp, from)
		}
	}
}

// answer builds the response to one query: its id and question, and for an
// A question one A record (the public address the first time, loopback
// after). Other questions get an empty answer.
func (s *rebindDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qEnd := i + 5 // the root label, QTYPE, QCLASS
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])

	resp := make([]byte, 0, qEnd+16)
	resp = append(resp, q[0], q[1])    // id
	resp = append(resp, 0x85, 0x80)    // response, authoritative, RD, RA, no error
	resp = append(resp, 0, 1, 0, 0)    // QDCOUNT 1, ANCOUNT set below
	resp = append(resp, 0, 0, 0, 0)    // NSCOUNT, ARCOUNT
	resp = append(resp, q[12:qEnd]...) // the question
	if qtype != 1 {
		return resp
	}
	addr := netip.MustParseAddr("127.0.0.1")
	if s.queries.Add(1) == 1 {
		addr = s.public
	}
	resp[7] = 1 // ANCOUNT
	a4 := addr.As4()
	resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4) // name -> question, A, IN, TTL 0, 4 bytes
	return append(resp, a4[:]...)
}

// resolver returns a resolver that asks this server only.
func (s *rebindDNS) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", s.pc.LocalAddr().String())
		},
	}
}

// countingListener is a TCP listener on 127.0.0.1 that counts the
// connections it accepts.
func countingListener(tb testing.TB) (net.Listener, *atomic.Int32) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln, &n
}

// TestDNSRebinding resolves a name whose DNS answers a public address first
// and 127.0.0.1 next. A check of the name made before dialling sees the
// public address and passes; the guarded dial then resolves again, gets
// loopback, and is refused in Control: the loopback listener never sees a
// connection. The same dial without the guard does connect, so the name
// really did rebind.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	const name = "rebind.herald.test."
	public := netip.MustParseAddr("93.184.216.34")
	dns := newRebindDNS(t, public)
	ln, accepted := countingListener(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := dns.resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The check a caller might make first (the API, or a proxy's pre-check).
	ips, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if len(ips) != 1 || ips[0].Unmap() != public {
		t.Fatalf("first lookup = %v, want [%s]", ips, public)
	}
	if err := CheckAddr(ips[0], false); err != nil {
		t.Fatalf("CheckAddr(%s) = %v, want the public address allowed", ips[0], err)
	}

	guarded := net.Dialer{Timeout: 5 * time.Second, Resolver: r, ControlContext: Control(false)}
	c, err := guarded.DialContext(ctx, "tcp4", net.JoinHostPort(name, port))
	if err == nil {
		c.Close()
		t.Fatal("the rebound name connected to loopback")
	}
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("dial = %v, want ErrBlocked naming 127.0.0.1", err)
	}
	if got := dns.queries.Load(); got != 2 {
		t.Errorf("%d A queries, want 2 (the check, then the dial)", got)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the loopback listener accepted %d connections", n)
	}

	// Without the guard the same name reaches the listener: the test above
	// can fail.
	open := net.Dialer{Timeout: 5 * time.Second, Resolver: r, ControlContext: Control(true)}
	c, err = open.DialContext(ctx, "tcp4", net.JoinHostPort(name, port))
	if err != nil {
		t.Fatalf("unguarded dial: %v", err)
	}
	c.Close()
}

// TestDialForms dials a listener on every local address, through every form
// that reaches this host (IPv4, IPv6, IPv4-mapped IPv6, the unspecified
// address, other 127/8 addresses, names in /etc/hosts, the host's own
// interface addresses), and forms that carry a blocked IPv4 address
// (NAT64, 6to4) or are not addresses at all. Each is refused or fails to
// resolve; none reaches the listener. An unguarded dial to 127.0.0.1 then
// does, so the listener was reachable.
func TestDialForms(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", ":0") // every local address, IPv4 and IPv6
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	type form struct {
		host    string
		mayFail bool // may fail to resolve rather than be refused
	}
	forms := []form{
		{host: "127.0.0.1"}, {host: "127.0.0.2"}, {host: "127.255.255.254"},
		{host: "0.0.0.0"}, {host: "::"}, {host: "::1"},
		{host: "::ffff:127.0.0.1"}, {host: "::ffff:7f00:1"}, {host: "::ffff:0.0.0.0"},
		{host: "64:ff9b::7f00:1"}, {host: "2002:7f00:1::"}, {host: "2002:7f00:1::1"},
		{host: "169.254.169.254"}, {host: "fd00:ec2::254"}, {host: "100.64.0.1"},
		{host: "10.0.0.1"}, {host: "172.16.0.1"}, {host: "192.168.0.1"},
		{host: "localhost"},
		// Not addresses to Go's parser; a C resolver would read them as
		// 127.0.0.1. Either way they never connect.
		{host: "127.1", mayFail: true}, {host: "2130706433", mayFail: true},
		{host: "0x7f.0.0.1", mayFail: true}, {host: "0177.0.0.1", mayFail: true},
	}
	seen := map[string]bool{}
	for _, f := range forms {
		seen[f.host] = true
	}
	// This host's name, which /etc/hosts often maps to a loopback address
	// (a name with a public address is rightly allowed, so it is left out).
	if name, err := os.Hostname(); err == nil && !seen[name] {
		ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", name)
		all := err == nil && len(ips) > 0
		for _, ip := range ips {
			all = all && Blocked(ip)
		}
		if all {
			forms = append(forms, form{host: name})
			seen[name] = true
		}
	}
	// The host's own addresses (on a typical machine, private or link-local).
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil || p.Addr().IsLinkLocalUnicast() {
				continue // a link-local address needs a zone to dial
			}
			if !Blocked(p.Addr()) || seen[p.Addr().String()] {
				continue // a public address of this host is allowed, rightly
			}
			forms = append(forms, form{host: p.Addr().String()})
			seen[p.Addr().String()] = true
		}
	}

	d := net.Dialer{Timeout: 2 * time.Second, ControlContext: Control(false)}
	// The dials run in parallel inside one group, so the count of accepted
	// connections is read after all of them.
	t.Run("refused", func(t *testing.T) {
		for _, f := range forms {
			t.Run(f.host, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(f.host, port))
				if err == nil {
					c.Close()
					t.Fatalf("dial %s: connected, want refused", f.host)
				}
				if errors.Is(err, ErrBlocked) {
					return
				}
				var dnsErr *net.DNSError
				if f.mayFail && errors.As(err, &dnsErr) {
					return
				}
				if errors.Is(err, syscall.EAFNOSUPPORT) {
					return // a host without IPv6: no socket, no connection
				}
				t.Errorf("dial %s: %v, want ErrBlocked", f.host, err)
			})
		}
	})
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the listener accepted %d connections", n)
	}
	open := net.Dialer{Timeout: 2 * time.Second}
	c, err := open.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("unguarded dial: %v", err)
	}
	c.Close()
}
