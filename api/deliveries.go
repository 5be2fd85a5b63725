package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/heraldhq/herald"
)

// deliveryOut is a delivery at the API.
type deliveryOut struct {
	ID             string `json:"id"`
	WebhookID      string `json:"webhook_id"`
	EventID        string `json:"event_id"`
	Status         string `json:"status"`
	AttemptCount   int    `json:"attempt_count"`
	NextAttemptAt  string `json:"next_attempt_at,omitempty"` // while pending
	FirstAttemptAt string `json:"first_attempt_at,omitempty"`
	TraceID        string `json:"trace_id"`
	BatchID        string `json:"batch_id,omitempty"`
	LastStatusCode int    `json:"last_status_code,omitempty"`
	LastError      string `json:"last_error,omitempty"`
	CreatedAt      string `json:"created_at"`
	UpdatedAt      string `json:"updated_at"`
	CompletedAt    string `json:"completed_at,omitempty"`
}

// attemptOut is one HTTP request of a delivery. StatusCode is null when no
// response came.
type attemptOut struct {
	N            int     `json:"n"`
	StartedAt    string  `json:"started_at"`
	DurationMS   float64 `json:"duration_ms"`
	StatusCode   *int    `json:"status_code"`
	Error        string  `json:"error"`
	ResponseBody string  `json:"response_body"`
}

// deliveryDetail is a delivery with its attempts.
type deliveryDetail struct {
	deliveryOut
	Attempts []attemptOut `json:"attempts"`
}

func renderDelivery(d herald.Delivery) deliveryOut {
	out := deliveryOut{
		ID:             d.ID,
		WebhookID:      d.SubscriptionID,
		EventID:        d.EventID,
		Status:         d.Status,
		AttemptCount:   d.Attempts,
		FirstAttemptAt: fmtTime(d.FirstAttemptAt),
		TraceID:        d.TraceID,
		BatchID:        d.BatchID,
		LastStatusCode: d.LastStatusCode,
		LastError:      d.LastError,
		CreatedAt:      fmtTime(d.CreatedAt),
		UpdatedAt:      fmtTime(d.UpdatedAt),
		CompletedAt:    fmtTime(d.CompletedAt),
	}
	if d.Status == herald.DeliveryPending {
		out.NextAttemptAt = fmtTime(d.NextAttemptAt)
	}
	return out
}

func renderAttempt(a herald.Attempt) attemptOut {
	out := attemptOut{
		N:            a.N,
		StartedAt:    fmtTime(a.StartedAt),
		DurationMS:   float64(a.Duration.Microseconds()) / 1000,
		Error:        a.Error,
		ResponseBody: a.ResponseBody,
	}
	if a.StatusCode != 0 {
		code := a.StatusCode
		out.StatusCode = &code
	}
	return out
}

var deliveryStatuses = []string{herald.DeliveryPending, herald.DeliveryDelivering, herald.DeliverySucceeded, herald.DeliveryFailed, herald.DeliveryCancelled}

func (s *Server) deliveryList(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	p, err := pageParam(q)
	if err != nil {
		return err
	}
	f := herald.DeliveryFilter{Page: p, SubscriptionID: q.Get("webhook_id"), EventID: q.Get("event_id"), Status: q.Get("status")}
	if f.Status != "" {
		ok := false
		for _, st := range deliveryStatuses {
			ok = ok || st == f.Status
		}
		if !ok {
			return herald.Invalid("status", `must be one of "pending", "delivering", "succeeded", "failed", "cancelled", got %q`, f.Status)
		}
	}
	ds, next, err := s.store.DeliveryList(r.Context(), c.tenant, f)
	if err != nil {
		return fmt.Errorf("list deliveries: %w", cursorError(err, p))
	}
	writeJSON(w, http.StatusOK, list(ds, next, renderDelivery))
	return nil
}

func (s *Server) deliveryGet(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	d, atts, err := s.store.DeliveryGet(r.Context(), c.tenant, id)
	if err != nil {
		return notFound(err, "delivery", id)
	}
	out := deliveryDetail{deliveryOut: renderDelivery(d), Attempts: make([]attemptOut, 0, len(atts))}
	for _, a := range atts {
		out.Attempts = append(out.Attempts, renderAttempt(a))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deliveryRetry(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	if err := decodeOptional(body, &struct{}{}); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := s.store.DeliveryRetry(r.Context(), c.tenant, id, s.now()); err != nil {
		if errors.Is(err, herald.ErrConflict) {
			return conflict("the delivery is being attempted right now; retry it once the attempt ends")
		}
		return notFound(err, "delivery", id)
	}
	s.notify()
	d, _, err := s.store.DeliveryGet(r.Context(), c.tenant, id)
	if err != nil {
		return notFound(err, "delivery", id)
	}
	writeJSON(w, http.StatusOK, renderDelivery(d))
	return nil
}
