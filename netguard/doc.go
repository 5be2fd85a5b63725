// Package netguard decides which IP addresses Herald may deliver webhooks to,
// and enforces it where it cannot be bypassed: in the dialer, on the address
// actually dialled (CONTRACT.md §7).
//
// Checking the URL's host name before the request is not enough: a name can
// resolve to a public address when checked and to 127.0.0.1 when dialled (DNS
// rebinding), and one name can have several addresses. [Control] runs after
// resolution, once per connection attempt, on the very socket address, so
// whatever the name resolved to, a blocked address is never connected to.
//
// It imports the standard library only.
package netguard
