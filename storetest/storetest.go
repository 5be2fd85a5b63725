package storetest

import (
	"testing"

	"github.com/heraldhq/herald"
)

// testCase is one conformance check, run on a fresh store.
type testCase struct {
	name string
	run  func(t *testing.T, s herald.Store)
}

// group is a set of cases about one part of the interface.
type group struct {
	name  string
	cases []testCase
}

// Run runs the conformance suite against the stores newStore returns. Each
// case calls newStore once for a fresh store, already migrated (so tenant
// "default" exists), that newStore closes through tb.Cleanup. Cases run in
// parallel.
func Run(t *testing.T, newStore func(tb testing.TB) herald.Store) {
	t.Helper()
	groups := []group{
		{"Lifecycle", lifecycleCases()},
		{"Setting", settingCases()},
		{"Tenant", tenantCases()},
		{"APIKey", apiKeyCases()},
		{"Subscription", subscriptionCases()},
		{"Publish", publishCases()},
		{"Event", eventCases()},
		{"Delivery", deliveryCases()},
		{"Lease", leaseCases()},
		{"Claim", claimCases()},
		{"Record", recordCases()},
		{"Release", releaseCases()},
		{"Retry", retryCases()},
		{"Maintenance", maintenanceCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, newStore(t))
				})
			}
		})
	}
}
