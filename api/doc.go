// Package api is Herald's HTTP API (CONTRACT.md §2–§6): tenants and API
// keys, subscriptions, events, deliveries, health, metrics and the OpenAPI
// document.
//
// One route table (routes.go) registers every handler on a net/http.ServeMux,
// says who may call each route, and feeds the OpenAPI document, so the three
// cannot drift apart; tests walk the same table.
//
// Choices where CONTRACT.md is silent:
//
//   - A request body must be JSON: a Content-Type other than application/json
//     (parameters allowed) or application/*+json answers 415. A body without
//     a Content-Type is read as JSON, as curl users expect.
//   - Bodies are decoded strictly: an unknown field, a value of the wrong type
//     or JSON nested deeper than 64 levels answers 400 naming the field.
//   - POST /events reads at most --max-event-bytes. POST /events/batch reads
//     at most min(1000 × max-event-bytes, 64 MiB) (at least one event's
//     worth), and each element of "events" may be at most max-event-bytes
//     of JSON; over either, 413 naming the element.
//   - A batch is checked as a whole before anything is stored: one invalid
//     element answers 400 naming it ("events[3].event_type"), a reused id
//     whose stored body differs answers 409 naming it, and nothing is stored.
//     Only if another request stores a clashing event between that check and
//     the commit are the batch's other events stored; the 409 then says so,
//     and sending the batch again is safe (it is idempotent by id).
//   - Idempotency compares a hash of the event as given: id, event_type,
//     version (defaulted to "1.0"), data (with insignificant whitespace
//     removed), create_time when given, and test. A repeat that omits
//     create_time therefore matches even though the stored one defaulted to
//     the time of the first publish.
//   - The publish limit (--tenant-publish-rps) is a token bucket per tenant
//     with a burst of max(1, rps), charged one token per event; a batch
//     larger than the burst can never pass and is answered 429 saying so.
//   - PATCH replaces each field it gives; null counts as absent. An
//     "encryption_key" of "" removes encryption. A "signing_secret" given to
//     PATCH replaces every secret at once; POST /webhooks/{id}/rotate-secret
//     keeps the old ones signing for the grace period. GET shows
//     "encryption": true|false instead of the key.
//   - POST /webhooks also takes "status" (a subscription may start paused).
//     Custom headers may not set Content-Type, Content-Length, Host,
//     User-Agent, X-Trace-Id, hop-by-hop headers, webhook-*, X-Hub-Signature*
//     or anything starting with the header prefix (Config.HeaderPrefix).
//   - Lists clamp limit to 500; limit < 1 or not a number is 400. Unknown
//     query parameters are ignored.
//   - An unknown path answers 404 and a known path with another method 405
//     (with Allow), both with the JSON error body. Every answer carries
//     X-Request-Id; a 5xx shows only that id and logs the cause under it.
//   - POST /webhooks/{id}/test, /replay, /rotate-secret and
//     /deliveries/{id}/retry answer 200.
package api
