// Package publish stores published events by group commit: concurrent
// publishers' requests are queued, and one committer goroutine hands
// everything queued to a single Store.EventPublish call, so N concurrent
// publishes share one transaction and one fsync. While a commit is in flight
// the next group accumulates; there is no fixed linger that adds latency to a
// lone publish.
package publish
