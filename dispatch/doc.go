// Package dispatch delivers Herald's webhooks: it leases due deliveries from
// the store in batches, sends each through its subscription's lane, and
// records the outcomes in batches.
//
// A lane exists per subscription in memory, created on the first lease that
// brings one of its deliveries. It enforces the subscription's max_rps (a
// token bucket of burst 1, so no sliding one-second window holds more than
// max_rps requests), max_in_flight, ordered (one request at a time, in
// publish order) and batch_max_events (queued deliveries grouped into one
// request; a batch once formed is always sent again with the same members
// and id). Each request runs in its own goroutine and only the lane's own
// goroutine waits on its limits, so a slow, dead, paused or throttled
// subscription never holds up another, nor the lease loop.
//
// A 429 or 503 with Retry-After pauses the whole lane until then (at most the
// retry policy's cap): its queued deliveries go back to the store due at the
// end of the pause, and it is left out of leases until then. A 410 Gone
// disables the subscription at once; a subscription whose every attempt has
// failed for Config.DisableAfter is disabled too. Either way Herald publishes
// a herald.webhook.disabled event to its tenant.
//
// Requests go out through one shared HTTP client: keep-alive pool per host, a
// timeout on every phase, no redirects (a 3xx is a failed attempt), no
// proxy from the environment, at most 64 KiB of a response read, and a
// dialer guarded by package netguard on the address actually dialled.
//
// Stop drains: no new attempt starts, deliveries leased but not started go
// back to the store at once, attempts under way finish and their outcomes are
// written, and the process's leases are released.
package dispatch
