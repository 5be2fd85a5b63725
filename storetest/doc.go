// Package storetest is the conformance suite of herald.Store: every store
// implementation runs it from its own tests,
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(tb testing.TB) herald.Store { return newMigratedStore(tb) })
//	}
//
// The suite tests only what the Store interface documents. Each case gets a
// fresh, migrated store and passes fixed times as now; nothing sleeps.
package storetest
