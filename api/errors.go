package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald"
)

// storeRetryAfter is the Retry-After, in seconds, of a 503 from an
// unavailable store.
const storeRetryAfter = 5

// apiError is an error with its HTTP answer decided.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter int      // seconds; 0: no Retry-After
	allow      []string // methods for a 405's Allow header
}

func (e *apiError) Error() string { return e.msg }

func errUnauthorized(msg string) error {
	return &apiError{status: http.StatusUnauthorized, code: "unauthorized", msg: msg}
}

func errForbidden(msg string) error {
	return &apiError{status: http.StatusForbidden, code: "forbidden", msg: msg}
}

func errTooLarge(msg string) error {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large", msg: msg}
}

// notFound turns ErrNotFound into a 404 naming what was not found, and
// passes any other error through.
func notFound(err error, what, id string) error {
	if errors.Is(err, herald.ErrNotFound) {
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("%s %q not found", what, id)}
	}
	return err
}

// conflict returns a 409 with msg.
func conflict(msg string) error {
	return &apiError{status: http.StatusConflict, code: "conflict", msg: msg}
}

// answer is the one table from errors to HTTP answers. internal reports a
// 5xx, whose error text is logged and never sent.
func answer(err error) (e *apiError, internal bool) {
	var ae *apiError
	var ve *herald.ValidationError
	switch {
	case errors.As(err, &ae):
		return ae, ae.status >= 500
	case errors.As(err, &ve):
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: ve.Error()}, false
	case errors.Is(err, herald.ErrInvalid):
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "invalid request"}, false
	case errors.Is(err, herald.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "not found"}, false
	case errors.Is(err, herald.ErrConflict):
		return &apiError{status: http.StatusConflict, code: "conflict", msg: "conflicts with the stored state"}, false
	case errors.Is(err, herald.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
			msg: "the store is unavailable; retry later", retryAfter: storeRetryAfter}, true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
			msg: "the request ended before it was done; retry it", retryAfter: 1}, true
	default:
		return &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}, true
	}
}

// fail writes err's answer. A 5xx is logged with the request id, and its body
// carries only that id, never err.Error().
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *call, err error) {
	e, internal := answer(err)
	if internal {
		level := slog.LevelError
		if errors.Is(err, context.Canceled) {
			level = slog.LevelDebug // the client went away
		} else if e.status == http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "request failed", "request_id", c.requestID,
			"method", r.Method, "path", r.URL.Path, "tenant_id", c.tenant, "status", e.status, "error", err)
		e = &apiError{status: e.status, code: e.code, retryAfter: e.retryAfter,
			msg: fmt.Sprintf("%s (request id %s)", e.msg, c.requestID)}
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if len(e.allow) > 0 {
		for _, m := range e.allow {
			w.Header().Add("Allow", m)
		}
	}
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, e.status, struct {
		Error body `json:"error"`
	}{body{e.code, e.msg}})
}
