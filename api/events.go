package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald"
)

// Event field limits and defaults.
const (
	defaultVersion = "1.0"
	maxVersionLen  = 64
)

// eventInput is one event of POST /events or /events/batch.
type eventInput struct {
	ID         *string         `json:"id"`
	EventType  *string         `json:"event_type"`
	Version    *string         `json:"version"`
	Data       json.RawMessage `json:"data"`
	CreateTime *string         `json:"create_time"`
	Test       *bool           `json:"test"`

	compact bool // Data is valid compact JSON already (fastdecode.go)
}

// eventRequest validates in and turns it into a publish request of tenant.
// Errors name the field after prefix (such as "events[3].").
func eventRequest(tenant string, in *eventInput, prefix string, now time.Time) (herald.PublishRequest, error) {
	ev := herald.Event{TenantID: tenant, Version: defaultVersion, CreateTime: now}
	if in.ID != nil {
		if err := checkEventID(*in.ID); err != nil {
			return herald.PublishRequest{}, herald.Invalid(prefix+"id", "%v", err)
		}
		ev.ID = *in.ID
	} else {
		ev.ID = herald.NewID(herald.PrefixEvent)
	}
	if in.EventType == nil {
		return herald.PublishRequest{}, herald.Invalid(prefix+"event_type", "required")
	}
	if !herald.ValidEventType(*in.EventType) {
		return herald.PublishRequest{}, herald.Invalid(prefix+"event_type",
			"%q is not an event type: letters, digits and \"_.:/-\", starting with a letter or digit, at most 255", *in.EventType)
	}
	ev.EventType = *in.EventType
	if in.Version != nil {
		if v := *in.Version; v == "" || len(v) > maxVersionLen || !printableASCII(v) {
			return herald.PublishRequest{}, herald.Invalid(prefix+"version", "must be 1 to %d printable ASCII characters", maxVersionLen)
		}
		ev.Version = *in.Version
	}
	switch {
	case len(in.Data) == 0 || bytes.Equal(in.Data, []byte("null")):
	case in.compact:
		ev.Data = in.Data
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, in.Data); err != nil {
			return herald.PublishRequest{}, herald.Invalid(prefix+"data", "invalid JSON")
		}
		ev.Data = buf.Bytes()
	}
	if in.CreateTime != nil {
		t, err := timeParam(prefix+"create_time", *in.CreateTime)
		if err != nil {
			return herald.PublishRequest{}, err
		}
		if t.IsZero() {
			return herald.PublishRequest{}, herald.Invalid(prefix+"create_time", "must be an RFC 3339 time")
		}
		ev.CreateTime = t
	}
	if in.Test != nil {
		ev.Test = *in.Test
	}
	ev.Hash = eventHash(ev, in.CreateTime != nil)
	return herald.PublishRequest{Event: ev}, nil
}

// checkEventID accepts 1 to 255 printable ASCII characters: the id travels
// in headers (webhook-id) and URL paths.
func checkEventID(id string) error {
	if id == "" || len(id) > herald.MaxEventIDLen {
		return fmt.Errorf("must be 1 to %d characters, got %d", herald.MaxEventIDLen, len(id))
	}
	if !printableASCII(id) {
		return errors.New("printable ASCII without spaces only")
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// eventHash identifies an event's request for idempotency: a hash of its
// fields as given, each length-prefixed. create_time counts only when the
// publisher gave it, so a repeat relying on the default matches.
func eventHash(ev herald.Event, createTimeGiven bool) []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		h.Write(b)
	}
	field([]byte("herald-event-v1"))
	field([]byte(ev.ID))
	field([]byte(ev.EventType))
	field([]byte(ev.Version))
	if createTimeGiven {
		field(strconv.AppendInt(nil, ev.CreateTime.UnixMicro(), 10))
	} else {
		field(nil)
	}
	field([]byte(strconv.FormatBool(ev.Test)))
	field(ev.Data)
	return h.Sum(nil)
}

// publishOut answers one published event.
type publishOut struct {
	ID         string `json:"id"`
	Deliveries int    `json:"deliveries"`
}

func (s *Server) eventPublish(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, s.maxEventBytes)
	if err != nil {
		return err
	}
	in, ok := fastEvent(body)
	if !ok {
		if err := decodeJSON(body, &in, ""); err != nil {
			return err
		}
	}
	req, err := eventRequest(c.tenant, &in, "", s.now().UTC().Truncate(time.Microsecond))
	if err != nil {
		return err
	}
	if err := s.allowPublish(c.tenant, 1); err != nil {
		return err
	}
	res, err := s.pub.Publish(r.Context(), []herald.PublishRequest{req})
	if err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	if len(res) != 1 {
		return fmt.Errorf("publish event: %d results for 1 request", len(res))
	}
	if err := res[0].Err; err != nil {
		if errors.Is(err, herald.ErrConflict) {
			return conflict(fmt.Sprintf("id: event %q was published before with a different body", req.Event.ID))
		}
		return fmt.Errorf("publish event: %w", err)
	}
	writeJSON(w, http.StatusAccepted, publishOut{ID: req.Event.ID, Deliveries: res[0].Deliveries})
	return nil
}

// decodeBatch reads the events of a POST /events/batch body: decoded in one
// pass when it can (fastBatch); otherwise the body is decoded strictly into
// raw elements, returned in raws, which the caller decodes one at a time so
// that an error names the element and field. Each sizedEvent has its size.
func decodeBatch(body []byte) (evs []sizedEvent, raws []json.RawMessage, err error) {
	if evs, ok := fastBatch(body); ok {
		return evs, nil, nil
	}
	var in struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := decodeJSON(body, &in, ""); err != nil {
		return nil, nil, err
	}
	switch {
	case in.Events == nil:
		return nil, nil, herald.Invalid("events", "required: a list of 1 to %d events", MaxBatchEvents)
	case len(in.Events) == 0:
		return nil, nil, herald.Invalid("events", "must not be empty")
	case len(in.Events) > MaxBatchEvents:
		return nil, nil, herald.Invalid("events", "at most %d events, got %d", MaxBatchEvents, len(in.Events))
	}
	evs = make([]sizedEvent, len(in.Events))
	for i, raw := range in.Events {
		evs[i].size = len(raw)
	}
	return evs, in.Events, nil
}

// batchLimit is the most bytes read of a POST /events/batch body.
func (s *Server) batchLimit() int64 {
	limit := min(MaxBatchEvents*s.maxEventBytes, maxBatchBytes)
	return max(limit, s.maxEventBytes+4096)
}

func (s *Server) eventPublishBatch(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(w, r, s.batchLimit())
	if err != nil {
		return err
	}
	evs, raws, err := decodeBatch(body)
	if err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	reqs := make([]herald.PublishRequest, len(evs))
	given := map[string]int{} // caller-given id -> its index
	for i := range evs {
		ev := &evs[i].in
		prefix := fmt.Sprintf("events[%d].", i)
		if int64(evs[i].size) > s.maxEventBytes {
			return errTooLarge(fmt.Sprintf("events[%d]: %d bytes is larger than the limit of %d bytes per event", i, evs[i].size, s.maxEventBytes))
		}
		if raws != nil {
			if err := decodeJSON(raws[i], ev, prefix); err != nil {
				return err
			}
		}
		if reqs[i], err = eventRequest(c.tenant, ev, prefix, now); err != nil {
			return err
		}
		if ev.ID != nil {
			if j, ok := given[*ev.ID]; ok {
				return herald.Invalid(prefix+"id", "repeats events[%d].id %q", j, *ev.ID)
			}
			given[*ev.ID] = i
		}
	}
	if err := s.allowPublish(c.tenant, len(reqs)); err != nil {
		return err
	}
	// Check reused ids first, in one query, so that a conflict stores
	// nothing of the batch.
	if len(given) > 0 {
		ids := make([]string, 0, len(given))
		for id := range given {
			ids = append(ids, id)
		}
		old, err := s.store.EventHashes(r.Context(), c.tenant, ids)
		if err != nil {
			return fmt.Errorf("check event ids: %w", err)
		}
		for i, req := range reqs {
			if h, ok := old[req.Event.ID]; ok && !bytes.Equal(h, req.Event.Hash) {
				return conflict(fmt.Sprintf("events[%d].id: event %q was published before with a different body; nothing of the batch was stored", i, req.Event.ID))
			}
		}
	}
	res, err := s.pub.Publish(r.Context(), reqs)
	if err != nil {
		return fmt.Errorf("publish events: %w", err)
	}
	if len(res) != len(reqs) {
		return fmt.Errorf("publish events: %d results for %d requests", len(res), len(reqs))
	}
	out := make([]publishOut, len(res))
	for i, rs := range res {
		if rs.Err != nil {
			if errors.Is(rs.Err, herald.ErrConflict) {
				return conflict(fmt.Sprintf("events[%d].id: event %q was published meanwhile with a different body; the batch's other events were stored, and sending the batch again is safe", i, reqs[i].Event.ID))
			}
			return fmt.Errorf("publish events: events[%d]: %w", i, rs.Err)
		}
		out[i] = publishOut{ID: reqs[i].Event.ID, Deliveries: rs.Deliveries}
	}
	writeJSON(w, http.StatusAccepted, listOut[publishOut]{Data: out})
	return nil
}

// limiter returns tenant's publish limiter.
func (s *Server) limiter(tenant string) *rate.Limiter {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.limiters[tenant]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.publishRPS), max(1, int(s.publishRPS)))
		s.limiters[tenant] = l
	}
	return l
}

// allowPublish charges n events to tenant's publish limit, or answers 429
// with the seconds until they would fit. A refused request is not charged.
func (s *Server) allowPublish(tenant string, n int) error {
	if s.publishRPS <= 0 {
		return nil
	}
	l := s.limiter(tenant)
	now := s.now()
	res := l.ReserveN(now, n)
	if !res.OK() {
		return &apiError{status: http.StatusTooManyRequests, code: "rate_limited",
			retryAfter: int(math.Ceil(float64(n) / s.publishRPS)),
			msg:        fmt.Sprintf("%d events at once exceed this tenant's publish burst of %d: send smaller batches", n, l.Burst())}
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return &apiError{status: http.StatusTooManyRequests, code: "rate_limited",
			retryAfter: max(1, int(math.Ceil(d.Seconds()))),
			msg:        fmt.Sprintf("this tenant publishes more than %g events per second", s.publishRPS)}
	}
	return nil
}

// eventOut is an event at the API.
type eventOut struct {
	ID            string          `json:"id"`
	EventType     string          `json:"event_type"`
	Version       string          `json:"version"`
	Data          json.RawMessage `json:"data,omitempty"`
	CreateTime    string          `json:"create_time"`
	Test          bool            `json:"test"`
	DeliveryCount int             `json:"delivery_count"`
	ReceivedAt    string          `json:"received_at"`
}

// eventDetail is an event with (the first page of) its deliveries.
type eventDetail struct {
	eventOut
	Deliveries           []deliveryOut `json:"deliveries"`
	DeliveriesNextCursor string        `json:"deliveries_next_cursor,omitempty"`
}

func renderEvent(ev herald.Event) eventOut {
	return eventOut{
		ID:            ev.ID,
		EventType:     ev.EventType,
		Version:       ev.Version,
		Data:          ev.Data,
		CreateTime:    fmtTime(ev.CreateTime),
		Test:          ev.Test,
		DeliveryCount: ev.Deliveries,
		ReceivedAt:    fmtTime(ev.ReceivedAt),
	}
}

func (s *Server) eventList(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	p, err := pageParam(q)
	if err != nil {
		return err
	}
	f := herald.EventFilter{Page: p, EventType: q.Get("event_type")}
	if f.EventType != "" && !herald.ValidEventType(f.EventType) {
		return herald.Invalid("event_type", "%q is not an event type", f.EventType)
	}
	if f.Since, err = timeParam("since", q.Get("since")); err != nil {
		return err
	}
	if f.Until, err = timeParam("until", q.Get("until")); err != nil {
		return err
	}
	evs, next, err := s.store.EventList(r.Context(), c.tenant, f)
	if err != nil {
		return fmt.Errorf("list events: %w", cursorError(err, p))
	}
	writeJSON(w, http.StatusOK, list(evs, next, renderEvent))
	return nil
}

func (s *Server) eventGet(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	ev, err := s.store.EventGet(r.Context(), c.tenant, id)
	if err != nil {
		return notFound(err, "event", id)
	}
	ds, next, err := s.store.DeliveryList(r.Context(), c.tenant, herald.DeliveryFilter{
		Page: herald.Page{Limit: herald.MaxPageLimit}, EventID: ev.ID})
	if err != nil {
		return fmt.Errorf("list deliveries of event: %w", err)
	}
	out := eventDetail{eventOut: renderEvent(ev), Deliveries: make([]deliveryOut, 0, len(ds)), DeliveriesNextCursor: next}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, renderDelivery(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
