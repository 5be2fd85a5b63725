package dispatch

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/heraldhq/herald/netguard"
)

// Limits of the outbound HTTP client.
const (
	// MaxResponseRead is the most of a response body read (CONTRACT.md §5.4).
	MaxResponseRead = 64 << 10
	// maxResponseHeaderBytes bounds a response's headers.
	maxResponseHeaderBytes = 64 << 10
	dialTimeout            = 10 * time.Second
	tlsHandshakeTimeout    = 10 * time.Second
	// responseHeaderTimeout backs up the per-request timeout (at most 60s
	// by the API's validation), which is what normally ends a slow request.
	responseHeaderTimeout = 2 * time.Minute
	maxIdleConnsPerHost   = 1024
	idleConnTimeout       = 90 * time.Second
)

// newTransport returns the one transport all deliveries share: keep-alive
// connections pooled per host, a timeout on every phase, TLS always verified,
// the environment's proxy settings ignored, and a dialer that refuses blocked
// addresses on the address actually dialled.
//
// Through a proxy the dialer only ever connects to the proxy (which is the
// operator's choice and may well be on a private network), so the endpoint's
// addresses are checked before the request instead (see checkHost): that
// check is made on a separate resolution, so a proxy should enforce its own
// egress rules against DNS rebinding.
func newTransport(proxy *url.URL, allowPrivate bool) *http.Transport {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	proxyFunc := func(*http.Request) (*url.URL, error) { return nil, nil }
	if proxy != nil {
		proxyFunc = http.ProxyURL(proxy)
	} else {
		dialer.ControlContext = netguard.Control(allowPrivate)
	}
	return &http.Transport{
		Proxy:                  proxyFunc,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           0, // no limit overall; per host below
		MaxIdleConnsPerHost:    maxIdleConnsPerHost,
		IdleConnTimeout:        idleConnTimeout,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ResponseHeaderTimeout:  responseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		// Verification is never turned off (CONTRACT.md §7).
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// newClient returns the client that sends deliveries: it never follows a
// redirect (a 3xx is a failed attempt) and has no overall timeout of its own
// (each request carries its subscription's timeout in its context).
func newClient(rt http.RoundTripper) *http.Client {
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// checkHost resolves the URL's host and refuses it when any of its addresses
// is blocked. It is used only when requests go through a proxy, where the
// dialer cannot see the endpoint's address.
func checkHost(ctx context.Context, r *net.Resolver, u *url.URL, allowPrivate bool) error {
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return netguard.CheckAddr(ip, false)
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		if err := netguard.CheckAddr(ip, false); err != nil {
			return err
		}
	}
	return nil
}
