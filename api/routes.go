package api

import "net/http"

// Access says who may call a route.
type Access int

// Access levels.
const (
	// Public routes need no key.
	Public Access = iota
	// Tenant routes take any valid key and act within the key's tenant.
	Tenant
	// Admin routes take the admin key only; a tenant's key gets 403.
	Admin
)

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Tenant:
		return "tenant"
	case Admin:
		return "admin"
	}
	return "unknown"
}

// Route is one entry of the API's route table.
type Route struct {
	Method string
	// Pattern is the path as a net/http.ServeMux pattern, such as
	// "/webhooks/{id}"; OpenAPI writes path parameters the same way.
	Pattern string
	Access  Access
	Summary string
}

// handler serves one route. It writes the success answer itself and returns
// an error for anything else, which the wrapper answers through the error
// table.
type handler func(s *Server, w http.ResponseWriter, r *http.Request, c *call) error

// route is a Route with its handler and what the OpenAPI document says of it.
type route struct {
	Route
	handle handler
	op     operation
}

// operation is a route's OpenAPI detail. Schema names refer to
// components/schemas of the document.
type operation struct {
	id       string   // operationId
	tag      string   // group in the document
	request  string   // schema of the JSON body; "" none
	optional bool     // the body may be omitted
	status   int      // success status
	response string   // schema of the success body; "" none
	query    []string // query parameters, names of queryParams
	text     bool     // the success body is text (metrics)
}

// routeTable is every route of the API. Registration, access control, the
// OpenAPI document and the tenant-isolation test all read it.
func routeTable() []route {
	r := func(method, pattern string, access Access, summary string, h handler, op operation) route {
		return route{Route: Route{Method: method, Pattern: pattern, Access: access, Summary: summary}, handle: h, op: op}
	}
	page := []string{"limit", "cursor"}
	return []route{
		r("GET", "/healthz", Public, "Liveness: 200 while the process runs", (*Server).healthz,
			operation{id: "getHealth", tag: "operations", status: 200, response: "Status"}),
		r("GET", "/readyz", Public, "Readiness: 200 when the store answers, else 503", (*Server).readyz,
			operation{id: "getReady", tag: "operations", status: 200, response: "Status"}),
		r("GET", "/metrics", Public, "Prometheus metrics", (*Server).serveMetrics,
			operation{id: "getMetrics", tag: "operations", status: 200, text: true}),
		r("GET", "/openapi.json", Public, "This OpenAPI document", (*Server).serveOpenAPI,
			operation{id: "getOpenAPI", tag: "operations", status: 200, response: "OpenAPIDocument"}),

		r("POST", "/tenants", Admin, "Create a tenant", (*Server).tenantCreate,
			operation{id: "createTenant", tag: "tenants", request: "TenantInput", status: 201, response: "Tenant"}),
		r("GET", "/tenants", Admin, "List tenants, by id", (*Server).tenantList,
			operation{id: "listTenants", tag: "tenants", status: 200, response: "TenantList", query: page}),
		r("POST", "/tenants/{id}/keys", Admin, "Create an API key for a tenant; the key is shown only here", (*Server).keyCreate,
			operation{id: "createKey", tag: "tenants", request: "Empty", optional: true, status: 201, response: "APIKeyCreated"}),
		r("DELETE", "/tenants/{id}/keys/{key_id}", Admin, "Revoke an API key at once", (*Server).keyRevoke,
			operation{id: "revokeKey", tag: "tenants", status: 204}),

		r("POST", "/webhooks", Tenant, "Create a subscription; the signing secret is shown only here", (*Server).webhookCreate,
			operation{id: "createWebhook", tag: "webhooks", request: "SubscriptionInput", status: 201, response: "SubscriptionWithSecret"}),
		r("GET", "/webhooks", Tenant, "List subscriptions, oldest first", (*Server).webhookList,
			operation{id: "listWebhooks", tag: "webhooks", status: 200, response: "SubscriptionList", query: page}),
		r("GET", "/webhooks/{id}", Tenant, "Get a subscription (without secrets)", (*Server).webhookGet,
			operation{id: "getWebhook", tag: "webhooks", status: 200, response: "Subscription"}),
		r("PATCH", "/webhooks/{id}", Tenant, "Change a subscription; absent fields stay", (*Server).webhookPatch,
			operation{id: "updateWebhook", tag: "webhooks", request: "SubscriptionPatch", status: 200, response: "Subscription"}),
		r("DELETE", "/webhooks/{id}", Tenant, "Delete a subscription and cancel its pending deliveries", (*Server).webhookDelete,
			operation{id: "deleteWebhook", tag: "webhooks", status: 204}),
		r("POST", "/webhooks/{id}/rotate-secret", Tenant, "Rotate the signing secret; the old one signs beside it until the grace ends", (*Server).webhookRotate,
			operation{id: "rotateWebhookSecret", tag: "webhooks", request: "RotateSecretInput", optional: true, status: 200, response: "SubscriptionWithSecret"}),
		r("POST", "/webhooks/{id}/test", Tenant, "Send one webhook.test event to this subscription alone", (*Server).webhookTest,
			operation{id: "testWebhook", tag: "webhooks", request: "Empty", optional: true, status: 200, response: "TestResult"}),
		r("POST", "/webhooks/{id}/replay", Tenant, "Queue the subscription's finished deliveries again", (*Server).webhookReplay,
			operation{id: "replayWebhook", tag: "webhooks", request: "ReplayInput", optional: true, status: 200, response: "ReplayResult"}),

		r("POST", "/events", Tenant, "Publish an event; 202 once it and its deliveries are durably stored", (*Server).eventPublish,
			operation{id: "publishEvent", tag: "events", request: "EventInput", status: 202, response: "PublishResult"}),
		r("POST", "/events/batch", Tenant, "Publish up to 1000 events in one commit", (*Server).eventPublishBatch,
			operation{id: "publishEvents", tag: "events", request: "EventBatchInput", status: 202, response: "PublishBatchResult"}),
		r("GET", "/events", Tenant, "List events, newest first", (*Server).eventList,
			operation{id: "listEvents", tag: "events", status: 200, response: "EventList", query: []string{"event_type", "since", "until", "limit", "cursor"}}),
		r("GET", "/events/{id}", Tenant, "Get an event with its deliveries", (*Server).eventGet,
			operation{id: "getEvent", tag: "events", status: 200, response: "EventWithDeliveries"}),

		r("GET", "/deliveries", Tenant, "List deliveries, newest first", (*Server).deliveryList,
			operation{id: "listDeliveries", tag: "deliveries", status: 200, response: "DeliveryList", query: []string{"webhook_id", "event_id", "status", "limit", "cursor"}}),
		r("GET", "/deliveries/{id}", Tenant, "Get a delivery with its attempts", (*Server).deliveryGet,
			operation{id: "getDelivery", tag: "deliveries", status: 200, response: "DeliveryWithAttempts"}),
		r("POST", "/deliveries/{id}/retry", Tenant, "Queue a delivery again now, with a fresh retry budget", (*Server).deliveryRetry,
			operation{id: "retryDelivery", tag: "deliveries", request: "Empty", optional: true, status: 200, response: "Delivery"}),
	}
}
