package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldhq/herald"
)

// Rotation grace of POST /webhooks/{id}/rotate-secret.
const (
	defaultGrace = 24 * time.Hour
	maxGrace     = 30 * 24 * time.Hour
)

// renderSubscription shows sub without its secrets and keys.
func renderSubscription(sub herald.Subscription) herald.SubscriptionView {
	return sub.View()
}

// withSecret shows sub with its newest signing secret.
func withSecret(sub herald.Subscription) herald.SubscriptionView {
	out := renderSubscription(sub)
	if len(sub.Secrets) > 0 {
		out.SigningSecret = sub.Secrets[0].Value
	}
	return out
}

// writeSecret answers with a body that carries a secret, which no cache may
// keep.
func writeSecret(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, v)
}

func (s *Server) webhookCreate(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	var in subscriptionInput
	if err := decodeJSON(body, &in, ""); err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	sub := newSubscription(c.tenant, now)
	if err := s.apply(&in, &sub, true, now); err != nil {
		return err
	}
	if err := s.store.SubscriptionCreate(r.Context(), sub); err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	w.Header().Set("Location", "/webhooks/"+sub.ID)
	writeSecret(w, http.StatusCreated, withSecret(sub))
	return nil
}

func (s *Server) webhookList(w http.ResponseWriter, r *http.Request, c *call) error {
	p, err := pageParam(r.URL.Query())
	if err != nil {
		return err
	}
	subs, next, err := s.store.SubscriptionList(r.Context(), c.tenant, p)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", cursorError(err, p))
	}
	writeJSON(w, http.StatusOK, list(subs, next, renderSubscription))
	return nil
}

func (s *Server) subscription(r *http.Request, c *call) (herald.Subscription, error) {
	id := r.PathValue("id")
	sub, err := s.store.SubscriptionGet(r.Context(), c.tenant, id)
	if err != nil {
		return sub, notFound(err, "webhook", id)
	}
	return sub, nil
}

func (s *Server) webhookGet(w http.ResponseWriter, r *http.Request, c *call) error {
	sub, err := s.subscription(r, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderSubscription(sub))
	return nil
}

func (s *Server) webhookPatch(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	var in subscriptionInput
	if err := decodeJSON(body, &in, ""); err != nil {
		return err
	}
	var was string
	sub, err := s.updateSubscription(r, c, func(sub *herald.Subscription, now time.Time) error {
		was = sub.Status
		return s.apply(&in, sub, false, now)
	})
	if err != nil {
		return err
	}
	if sub.Status == herald.StatusActive && was != herald.StatusActive {
		s.notify() // its held deliveries are due now
	}
	writeJSON(w, http.StatusOK, renderSubscription(sub))
	return nil
}

func (s *Server) webhookDelete(w http.ResponseWriter, r *http.Request, c *call) error {
	sub, err := s.subscription(r, c)
	if err != nil {
		return err
	}
	if err := s.store.SubscriptionDelete(r.Context(), c.tenant, sub.ID, s.now()); err != nil {
		return notFound(err, "webhook", sub.ID)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type rotateInput struct {
	SigningSecret *string `json:"signing_secret"`
	Grace         *string `json:"grace"`
}

func (s *Server) webhookRotate(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	var in rotateInput
	if err := decodeOptional(body, &in); err != nil {
		return err
	}
	grace := defaultGrace
	if in.Grace != nil {
		g, err := time.ParseDuration(*in.Grace)
		if err != nil || g < 0 || g > maxGrace {
			return herald.Invalid("grace", "must be a Go duration from 0s to %s like \"24h\", got %q", maxGrace, *in.Grace)
		}
		grace = g
	}
	sub, err := s.updateSubscription(r, c, func(sub *herald.Subscription, now time.Time) error {
		return s.rotate(sub, in.SigningSecret, grace, now)
	})
	if err != nil {
		return err
	}
	writeSecret(w, http.StatusOK, withSecret(sub))
	return nil
}

// maxUpdateTries is how often a read-modify-write of a subscription is run
// again when another writer (another request, the dispatcher disabling it,
// another process) changed it in between.
const maxUpdateTries = 5

// updateSubscription reads the call's subscription, lets change modify it,
// and stores it, all again from a fresh read if another writer got in
// between (the store's revision check). It returns what was stored.
func (s *Server) updateSubscription(r *http.Request, c *call, change func(sub *herald.Subscription, now time.Time) error) (herald.Subscription, error) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for try := 1; ; try++ {
		sub, err := s.subscription(r, c)
		if err != nil {
			return herald.Subscription{}, err
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		if err := change(&sub, now); err != nil {
			return herald.Subscription{}, err
		}
		sub.UpdatedAt = now
		err = s.store.SubscriptionUpdate(r.Context(), sub)
		switch {
		case err == nil:
			sub.Revision++
			return sub, nil
		case errors.Is(err, herald.ErrConflict) && try < maxUpdateTries:
			continue
		case errors.Is(err, herald.ErrConflict):
			return herald.Subscription{}, conflict(fmt.Sprintf("webhook %q kept changing while it was updated; try again", sub.ID))
		}
		return herald.Subscription{}, notFound(err, "webhook", sub.ID)
	}
}

// rotate makes secret (or a new one, when nil) the signing secret of sub,
// keeping the previous ones valid for grace.
func (s *Server) rotate(sub *herald.Subscription, given *string, grace time.Duration, now time.Time) error {
	var secret string
	if given != nil {
		if err := s.checkSecret(sub.SignatureScheme, *given); err != nil {
			return err
		}
		secret = *given
	} else {
		var err error
		if secret, err = s.genSecret(sub.SignatureScheme); err != nil {
			return fmt.Errorf("generate signing secret: %w", err)
		}
	}
	until := now.Add(grace)
	secrets := []herald.Secret{{Value: secret}}
	for _, old := range sub.Secrets {
		if old.Value == secret || !old.ExpiresAt.IsZero() && !now.Before(old.ExpiresAt) || !now.Before(until) {
			continue // expired, or the grace is 0
		}
		if old.ExpiresAt.IsZero() || old.ExpiresAt.After(until) {
			old.ExpiresAt = until
		}
		if len(secrets) < maxSecrets {
			secrets = append(secrets, old)
		}
	}
	sub.Secrets = secrets
	return nil
}

func (s *Server) webhookTest(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	if err := decodeOptional(body, &struct{}{}); err != nil {
		return err
	}
	sub, err := s.subscription(r, c)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(map[string]string{"webhook_id": sub.ID})
	now := s.now().UTC().Truncate(time.Microsecond)
	ev := herald.Event{
		TenantID:   c.tenant,
		ID:         herald.NewID(herald.PrefixEvent),
		EventType:  herald.EventTypeTest,
		Version:    defaultVersion,
		Data:       data,
		CreateTime: now,
		Test:       sub.Mode == herald.ModeTest,
	}
	ev.Hash = eventHash(ev, false)
	res, err := s.pub.Publish(r.Context(), []herald.PublishRequest{{Event: ev, Only: sub.ID}})
	if err != nil {
		return fmt.Errorf("publish test event: %w", err)
	}
	if len(res) != 1 {
		return fmt.Errorf("publish test event: %d results for 1 request", len(res))
	}
	if err := res[0].Err; err != nil {
		return notFound(err, "webhook", sub.ID)
	}
	if len(res[0].DeliveryIDs) == 0 {
		return errors.New("publish test event: no delivery created")
	}
	writeJSON(w, http.StatusOK, map[string]string{"delivery_id": res[0].DeliveryIDs[0], "event_id": ev.ID})
	return nil
}

type replayInput struct {
	Since  *string `json:"since"`
	Until  *string `json:"until"`
	Status *string `json:"status"`
}

func (s *Server) webhookReplay(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	var in replayInput
	if err := decodeOptional(body, &in); err != nil {
		return err
	}
	var f herald.ReplayFilter
	if in.Since != nil {
		if f.Since, err = timeParam("since", *in.Since); err != nil {
			return err
		}
	}
	if in.Until != nil {
		if f.Until, err = timeParam("until", *in.Until); err != nil {
			return err
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return herald.Invalid("until", "must be after since")
	}
	if in.Status != nil {
		switch st := *in.Status; st {
		case herald.DeliveryFailed, herald.DeliveryCancelled, herald.DeliverySucceeded:
			f.Status = st
		default:
			return herald.Invalid("status", `must be "failed", "cancelled" or "succeeded", got %q`, st)
		}
	}
	sub, err := s.subscription(r, c)
	if err != nil {
		return err
	}
	n, err := s.store.DeliveryReplay(r.Context(), c.tenant, sub.ID, f, s.now())
	if err != nil {
		return notFound(err, "webhook", sub.ID)
	}
	if n > 0 {
		s.notify()
	}
	writeJSON(w, http.StatusOK, map[string]int{"requeued": n})
	return nil
}

// cursorError names the cursor when the store rejects it.
func cursorError(err error, p herald.Page) error {
	if p.Cursor != "" && errors.Is(err, herald.ErrInvalid) {
		if _, ok := errors.AsType[*herald.ValidationError](err); !ok {
			return herald.Invalid("cursor", "is not a cursor this API returned")
		}
	}
	return err
}
