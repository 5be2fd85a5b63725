package api

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/heraldhq/herald"
)

// The OpenAPI 3.1 document is built from the route table (paths, methods,
// parameters, access) and the hand-written schemas below, so a route cannot
// be served without being documented; openapi_test.go checks both ways.

type jsonObj = map[string]any

var pathParamRE = regexp.MustCompile(`\{([a-z_]+)\}`)

// queryParams documents every query parameter a route may name.
var queryParams = map[string]jsonObj{
	"limit":      {"description": "page size, 1 to 500 (larger is clamped); default 50", "schema": jsonObj{"type": "integer", "minimum": 1, "default": herald.DefaultPageLimit}},
	"cursor":     {"description": "next_cursor of the previous page", "schema": jsonObj{"type": "string"}},
	"event_type": {"description": "only events of this exact type", "schema": jsonObj{"type": "string"}},
	"since":      {"description": "received at or after this RFC 3339 time", "schema": jsonObj{"type": "string", "format": "date-time"}},
	"until":      {"description": "received before this RFC 3339 time", "schema": jsonObj{"type": "string", "format": "date-time"}},
	"webhook_id": {"description": "only deliveries to this subscription", "schema": jsonObj{"type": "string"}},
	"event_id":   {"description": "only deliveries of this event", "schema": jsonObj{"type": "string"}},
	"status":     {"description": "only deliveries in this status", "schema": jsonObj{"type": "string", "enum": deliveryStatuses}},
}

func openAPIDocument(routes []route) jsonObj {
	paths := jsonObj{}
	for _, rt := range routes {
		item, _ := paths[rt.Pattern].(jsonObj)
		if item == nil {
			item = jsonObj{}
			paths[rt.Pattern] = item
		}
		item[strings.ToLower(rt.Method)] = operationObject(rt)
	}
	return jsonObj{
		"openapi": "3.1.0",
		"info": jsonObj{
			"title":       "Herald",
			"version":     herald.Version,
			"description": "Herald delivers webhooks: publish events, and Herald delivers them signed, optionally encrypted, with retries, to every subscribed endpoint.",
		},
		"security": []any{jsonObj{"bearer": []any{}}},
		"tags": []any{
			jsonObj{"name": "webhooks", "description": "Subscriptions: endpoints and what they receive"},
			jsonObj{"name": "events", "description": "Publishing and reading events"},
			jsonObj{"name": "deliveries", "description": "Deliveries and their attempts"},
			jsonObj{"name": "tenants", "description": "Tenants and API keys (admin key only)"},
			jsonObj{"name": "operations", "description": "Health, readiness, metrics, this document"},
		},
		"paths": paths,
		"components": jsonObj{
			"securitySchemes": jsonObj{"bearer": jsonObj{"type": "http", "scheme": "bearer", "description": "an API key: Authorization: Bearer <key>"}},
			"schemas":         schemas(),
		},
	}
}

func operationObject(rt route) jsonObj {
	op := jsonObj{
		"operationId": rt.op.id,
		"summary":     rt.Summary,
		"tags":        []any{rt.op.tag},
	}
	if rt.Access == Public {
		op["security"] = []any{}
	}
	var params []any
	for _, m := range pathParamRE.FindAllStringSubmatch(rt.Pattern, -1) {
		params = append(params, jsonObj{"name": m[1], "in": "path", "required": true, "schema": jsonObj{"type": "string"}})
	}
	for _, name := range rt.op.query {
		p := jsonObj{"name": name, "in": "query"}
		for k, v := range queryParams[name] {
			p[k] = v
		}
		params = append(params, p)
	}
	if params != nil {
		op["parameters"] = params
	}
	if rt.op.request != "" {
		op["requestBody"] = jsonObj{
			"required": !rt.op.optional,
			"content":  jsonObj{"application/json": jsonObj{"schema": ref(rt.op.request)}},
		}
	}
	ok := jsonObj{"description": http.StatusText(rt.op.status)}
	switch {
	case rt.op.text:
		ok["content"] = jsonObj{"text/plain": jsonObj{"schema": jsonObj{"type": "string"}}}
	case rt.op.response != "":
		ok["content"] = jsonObj{"application/json": jsonObj{"schema": ref(rt.op.response)}}
	}
	responses := jsonObj{strconv.Itoa(rt.op.status): ok}
	errs := []int{}
	if rt.op.request != "" || rt.op.query != nil {
		errs = append(errs, 400)
	}
	if rt.Access != Public {
		errs = append(errs, 401)
	}
	if rt.Access == Admin {
		errs = append(errs, 403)
	}
	if strings.Contains(rt.Pattern, "{") {
		errs = append(errs, 404)
	}
	if rt.Method == "POST" || rt.Method == "PATCH" {
		errs = append(errs, 409)
	}
	if rt.op.request != "" {
		errs = append(errs, 413, 415)
	}
	if rt.op.id == "publishEvent" || rt.op.id == "publishEvents" {
		errs = append(errs, 429)
	}
	if rt.Access != Public || rt.op.id == "getReady" {
		errs = append(errs, 503)
	}
	for _, code := range errs {
		responses[strconv.Itoa(code)] = jsonObj{"description": http.StatusText(code),
			"content": jsonObj{"application/json": jsonObj{"schema": ref("Error")}}}
	}
	op["responses"] = responses
	return op
}

func ref(name string) jsonObj { return jsonObj{"$ref": "#/components/schemas/" + name} }

// object is a JSON Schema object; required lists required properties.
func object(props jsonObj, required ...string) jsonObj {
	o := jsonObj{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

// closed is object without other properties (request bodies are decoded
// strictly).
func closed(props jsonObj, required ...string) jsonObj {
	o := object(props, required...)
	o["additionalProperties"] = false
	return o
}

func str(desc string) jsonObj { return jsonObj{"type": "string", "description": desc} }

func timeStr(desc string) jsonObj {
	return jsonObj{"type": "string", "format": "date-time", "description": desc}
}

func enum(desc string, def string, values ...string) jsonObj {
	return jsonObj{"type": "string", "enum": values, "default": def, "description": desc}
}

func integer(desc string, lo, hi, def int) jsonObj {
	return jsonObj{"type": "integer", "minimum": lo, "maximum": hi, "default": def, "description": desc}
}

func boolean(desc string, def bool) jsonObj {
	return jsonObj{"type": "boolean", "default": def, "description": desc}
}

func dur(desc, def string) jsonObj {
	return jsonObj{"type": "string", "description": desc + " (a Go duration such as \"250ms\", \"1h\")", "default": def}
}

func arrayOf(items jsonObj) jsonObj { return jsonObj{"type": "array", "items": items} }

func listOf(name string) jsonObj {
	return object(jsonObj{
		"data":        arrayOf(ref(name)),
		"next_cursor": str("pass as ?cursor= for the next page; absent on the last page"),
	}, "data")
}

// subscriptionProps are the writable fields of a subscription.
func subscriptionProps(withStatus bool) jsonObj {
	p := jsonObj{
		"url":              jsonObj{"type": "string", "format": "uri", "maxLength": maxURLLen, "description": "absolute http or https URL; internal addresses are refused unless --allow-private-networks"},
		"name":             jsonObj{"type": "string", "maxLength": maxNameLen},
		"events":           jsonObj{"type": "array", "minItems": 1, "maxItems": maxPatterns, "items": str(`an exact event type, "*", or a prefix ending in ".*" or "-*"`)},
		"signing_secret":   str("generated when absent; for standard, whsec_ and base64 of the key"),
		"signature_scheme": enum("how deliveries are signed", herald.DefaultSignatureScheme, knownSchemes...),
		"encryption_key":   str("standard base64 of exactly 32 bytes: AES-256-GCM encrypts each body; \"\" removes it"),
		"include_payload":  boolean("send the event's data", true),
		"payload_format":   enum("body shape of one event", herald.DefaultPayloadFormat, herald.FormatEnvelope, herald.FormatFlat),
		"mode":             enum("test subscriptions receive only test events, live ones only live events", herald.DefaultMode, herald.ModeLive, herald.ModeTest),
		"ordered":          boolean("send events one at a time in publish order", false),
		"headers":          jsonObj{"type": "object", "maxProperties": maxHeaders, "additionalProperties": jsonObj{"type": "string"}, "description": "extra headers sent with each delivery; Herald's own headers cannot be overridden"},
		"delivery":         ref("DeliveryConfigInput"),
	}
	if withStatus {
		p["status"] = enum("paused holds deliveries; disabled creates none", herald.StatusActive, herald.StatusActive, herald.StatusPaused, herald.StatusDisabled)
	}
	return p
}

func deliveryObj(closedObj bool) jsonObj {
	props := jsonObj{
		"max_rps":          integer("most requests per second (sliding window)", minRPS, maxRPS, herald.DefaultMaxRPS),
		"max_in_flight":    integer("most requests at once", minInFlight, maxInFlight, herald.DefaultMaxInFlight),
		"timeout":          dur("per request, 1s to 60s", herald.DefaultTimeout.String()),
		"batch_max_events": integer("events per request; above 1 the body is a batch", 1, maxBatchEvents, herald.DefaultBatchMaxEvents),
		"retry":            ref("RetryInput"),
	}
	if closedObj {
		return closed(props)
	}
	props["retry"] = ref("Retry")
	return object(props)
}

func retryObj(closedObj bool) jsonObj {
	props := jsonObj{
		"max_attempts": integer("attempts before failing for good; 0 means no limit", 0, maxMaxAttempts, herald.DefaultMaxAttempts),
		"window":       dur("fail for good once this has passed since the first attempt", herald.DefaultRetryWindow.String()),
		"base":         dur("least sleep between attempts; at most cap", herald.DefaultRetryBase.String()),
		"cap":          dur("most sleep between attempts", herald.DefaultRetryCap.String()),
	}
	if closedObj {
		return closed(props)
	}
	return object(props)
}

func schemas() jsonObj {
	subOut := object(jsonObj{
		"id":               str("sub_…"),
		"url":              str(""),
		"name":             str(""),
		"events":           arrayOf(str("")),
		"signature_scheme": str(""),
		"encryption":       jsonObj{"type": "boolean", "description": "whether bodies are encrypted (the key is never shown)"},
		"include_payload":  jsonObj{"type": "boolean"},
		"payload_format":   str(""),
		"mode":             str(""),
		"ordered":          jsonObj{"type": "boolean"},
		"headers":          jsonObj{"type": "object", "additionalProperties": jsonObj{"type": "string"}},
		"delivery":         ref("DeliveryConfig"),
		"status":           jsonObj{"type": "string", "enum": []string{herald.StatusActive, herald.StatusPaused, herald.StatusDisabled}},
		"disabled_reason":  str("why it was disabled; only while disabled"),
		"created_at":       timeStr(""),
		"updated_at":       timeStr(""),
	}, "id", "url", "name", "events", "signature_scheme", "encryption", "include_payload", "payload_format", "mode", "ordered", "headers", "delivery", "status", "created_at", "updated_at")
	delivery := object(jsonObj{
		"id":               str("dlv_…"),
		"webhook_id":       str("the subscription"),
		"event_id":         str(""),
		"status":           jsonObj{"type": "string", "enum": deliveryStatuses},
		"attempt_count":    jsonObj{"type": "integer"},
		"next_attempt_at":  timeStr("when it is due; only while pending"),
		"first_attempt_at": timeStr(""),
		"trace_id":         str("sent as X-Trace-Id, the same on every attempt"),
		"batch_id":         str("set once sent in a batch"),
		"last_status_code": jsonObj{"type": "integer"},
		"last_error":       str(""),
		"created_at":       timeStr(""),
		"updated_at":       timeStr(""),
		"completed_at":     timeStr("when it succeeded, failed for good or was cancelled"),
	}, "id", "webhook_id", "event_id", "status", "attempt_count", "trace_id", "created_at", "updated_at")
	event := object(jsonObj{
		"id":             str(""),
		"event_type":     str(""),
		"version":        str(""),
		"data":           jsonObj{"description": "any JSON; absent when the event had none"},
		"create_time":    timeStr(""),
		"test":           jsonObj{"type": "boolean"},
		"delivery_count": jsonObj{"type": "integer", "description": "deliveries fanned out at publish"},
		"received_at":    timeStr(""),
	}, "id", "event_type", "version", "create_time", "test", "delivery_count", "received_at")
	eventInput := closed(jsonObj{
		"id":          jsonObj{"type": "string", "minLength": 1, "maxLength": herald.MaxEventIDLen, "description": "idempotency key: the same id and body again answer the same; another body, 409. Generated (msg_…) when absent"},
		"event_type":  jsonObj{"type": "string", "maxLength": 255, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"},
		"version":     jsonObj{"type": "string", "default": defaultVersion, "maxLength": maxVersionLen},
		"data":        jsonObj{"description": "any JSON"},
		"create_time": timeStr("default: when received"),
		"test":        boolean("a test event, delivered only to mode=test subscriptions", false),
	}, "event_type")

	return jsonObj{
		"Error": object(jsonObj{"error": object(jsonObj{
			"code":    str("snake_case: invalid_request, unauthorized, forbidden, not_found, method_not_allowed, conflict, payload_too_large, unsupported_media_type, rate_limited, unavailable, internal"),
			"message": str("human text; for invalid_request it names the field"),
		}, "code", "message")}, "error"),
		"Status":          object(jsonObj{"status": str("ok")}, "status"),
		"OpenAPIDocument": jsonObj{"type": "object"},
		"Empty":           closed(jsonObj{}),

		"TenantInput": closed(jsonObj{
			"id":   jsonObj{"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
			"name": jsonObj{"type": "string", "maxLength": maxNameLen, "description": "default: the id"},
		}, "id"),
		"Tenant":     object(jsonObj{"id": str(""), "name": str(""), "created_at": timeStr("")}, "id", "name", "created_at"),
		"TenantList": listOf("Tenant"),
		"APIKeyCreated": object(jsonObj{
			"id":         str("key_…; used to revoke it"),
			"key":        str("the key itself, shown only here"),
			"prefix":     str("its first characters, to recognise it by"),
			"tenant_id":  str(""),
			"created_at": timeStr(""),
		}, "id", "key", "prefix", "tenant_id", "created_at"),

		"SubscriptionInput":   closed(subscriptionProps(true), "url", "events"),
		"SubscriptionPatch":   closed(subscriptionProps(true)),
		"DeliveryConfigInput": deliveryObj(true),
		"RetryInput":          retryObj(true),
		"DeliveryConfig":      deliveryObj(false),
		"Retry":               retryObj(false),
		"Subscription":        subOut,
		"SubscriptionWithSecret": jsonObj{"allOf": []any{ref("Subscription"),
			object(jsonObj{"signing_secret": str("the newest signing secret; shown only in this answer")}, "signing_secret")}},
		"SubscriptionList": listOf("Subscription"),
		"RotateSecretInput": closed(jsonObj{
			"signing_secret": str("the new secret; generated when absent"),
			"grace":          dur("how long the old secrets keep signing beside the new one, at most 720h", defaultGrace.String()),
		}),
		"TestResult": object(jsonObj{"delivery_id": str(""), "event_id": str("")}, "delivery_id"),
		"ReplayInput": closed(jsonObj{
			"since":  timeStr("deliveries created at or after"),
			"until":  timeStr("deliveries created before"),
			"status": jsonObj{"type": "string", "enum": []string{herald.DeliveryFailed, herald.DeliveryCancelled, herald.DeliverySucceeded}, "description": "default: failed and cancelled"},
		}),
		"ReplayResult": object(jsonObj{"requeued": jsonObj{"type": "integer"}}, "requeued"),

		"EventInput": eventInput,
		"EventBatchInput": closed(jsonObj{
			"events": jsonObj{"type": "array", "minItems": 1, "maxItems": MaxBatchEvents, "items": ref("EventInput")},
		}, "events"),
		"PublishResult": object(jsonObj{
			"id":         str("the event id"),
			"deliveries": jsonObj{"type": "integer", "description": "deliveries created (or, on a repeat, created the first time)"},
		}, "id", "deliveries"),
		"PublishBatchResult": object(jsonObj{"data": arrayOf(ref("PublishResult"))}, "data"),
		"Event":              event,
		"EventWithDeliveries": jsonObj{"allOf": []any{ref("Event"), object(jsonObj{
			"deliveries":             arrayOf(ref("Delivery")),
			"deliveries_next_cursor": str("when the event has more than 500 deliveries: page on with GET /deliveries?event_id=…&cursor=…"),
		}, "deliveries")}},
		"EventList": listOf("Event"),

		"Delivery": delivery,
		"DeliveryWithAttempts": jsonObj{"allOf": []any{ref("Delivery"),
			object(jsonObj{"attempts": arrayOf(ref("Attempt"))}, "attempts")}},
		"Attempt": object(jsonObj{
			"n":             jsonObj{"type": "integer", "description": "1 for the first attempt"},
			"started_at":    timeStr(""),
			"duration_ms":   jsonObj{"type": "number"},
			"status_code":   jsonObj{"type": []string{"integer", "null"}, "description": "null when no response came"},
			"error":         str("why the attempt failed without a response"),
			"response_body": str("at most 4 KiB of the response"),
		}, "n", "started_at", "duration_ms", "status_code", "error", "response_body"),
		"DeliveryList": listOf("Delivery"),
	}
}
