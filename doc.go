// Package herald holds Herald's domain: tenants, API keys, subscriptions,
// events, deliveries and attempts, the Store interface that the sqlite and
// postgres packages implement, the domain errors, ids and the sealing of
// secrets at rest.
//
// It imports the standard library only; every other package points inward to it.
package herald
