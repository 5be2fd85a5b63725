package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/netguard"
	"github.com/heraldhq/herald/webhook"
)

// result is what one attempt came to.
type result struct {
	started    time.Time
	duration   time.Duration
	status     int    // 0 when no response
	err        string // "" when a response came
	body       string // at most herald.MaxStoredResponse, valid UTF-8
	retryAfter time.Duration
	hasRA      bool // a Retry-After came with a 429 or 503
}

// success reports whether the endpoint answered 2xx. Anything else, a 3xx
// included, is a failed attempt.
func (r *result) success() bool {
	return r.err == "" && r.status >= 200 && r.status <= 299
}

// send makes one attempt for a job, frees the lane's slot as soon as the
// response is in, and queues the outcomes for the recorder.
func (d *Dispatcher) send(keep context.Context, l *lane, sub herald.Subscription, j job) {
	defer d.sendWG.Done()
	d.metrics.inFlight.Inc()
	res := d.attempt(keep, &sub, j)
	d.metrics.inFlight.Dec()
	<-d.global
	now := d.now()

	var pauseIDs, goneIDs []string
	var pauseAt time.Time
	gone := res.status == http.StatusGone
	startDisable := false
	d.mu.Lock()
	l.inflight--
	l.inflightN -= len(j.items)
	l.unrecorded += len(j.items) // one outcome each, queued below
	d.held -= heldBytes(j.items)
	l.finished(now, len(j.items))
	l.lastUsed = now
	if res.hasRA {
		// The endpoint asked for a pause: the whole lane waits, and what it
		// holds goes back to the store, due when the pause ends.
		pause := res.retryAfter
		if c := sub.Delivery.Retry.Cap; c > 0 {
			pause = min(pause, c)
		}
		if until := now.Add(pause); pause > 0 && until.After(l.pausedUntil) {
			l.pausedUntil = until
		}
		if l.pausedUntil.After(now) {
			pauseIDs, pauseAt = d.takeQueue(l), l.pausedUntil
		}
	}
	if gone && !l.disabling {
		l.disabling = true
		startDisable = true
		goneIDs = d.takeQueue(l)
	}
	l.wakeUp()
	d.mu.Unlock()

	outs := d.outcomesOf(&sub, j, &res, now)
	d.outbox.put(sub.ID, outs)
	d.observe(&sub, j, &res, outs, now)
	d.release(keep, pauseIDs, pauseAt)
	d.release(keep, goneIDs, now)
	if startDisable {
		d.bgWG.Add(1)
		go func() {
			defer d.bgWG.Done()
			if _, err := d.disable(keep, sub.TenantID, sub.ID, ReasonGone); err != nil {
				d.log.Warn("disable subscription", "tenant_id", sub.TenantID, "subscription_id", sub.ID,
					"error", err)
			}
			d.mu.Lock()
			l.disabling = false
			d.mu.Unlock()
		}()
	}
}

// attempt builds, signs and sends the request of a job and reads its answer.
func (d *Dispatcher) attempt(keep context.Context, sub *herald.Subscription, j job) result {
	timeout := sub.Delivery.Timeout
	if timeout <= 0 {
		timeout = herald.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(keep, timeout)
	defer cancel()
	start := d.cfg.Now()
	res := result{started: start.UTC().Truncate(time.Microsecond)}
	finish := func() { res.duration = max(d.cfg.Now().Sub(start), 0) }

	u, h, body, err := d.request(sub, j, start)
	if err == nil && d.cfg.Proxy != nil {
		err = checkHost(ctx, d.resolver, u, d.cfg.AllowPrivateNetworks)
	}
	if err != nil {
		res.err = describe(err, ctx, timeout)
		finish()
		return res
	}
	var resp *http.Response
	if d.h1 != nil && h1Usable(u) {
		resp, err = d.h1.post(ctx, u, h, body)
	} else {
		var req *http.Request
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, sub.URL, bytes.NewReader(body)); err == nil {
			req.Header = h
			resp, err = d.client.Do(req)
		}
	}
	if err != nil {
		res.err = describe(err, ctx, timeout)
		finish()
		return res
	}
	res.status = resp.StatusCode
	res.body = d.readResponse(resp.Body)
	resp.Body.Close()
	finish()
	if honoursRetryAfter(res.status) {
		res.retryAfter, res.hasRA = RetryAfter(resp.Header, d.cfg.Now())
	}
	return res
}

// request builds the request of a job (CONTRACT.md §5.1-5.3): the URL, the
// body, encrypted when the subscription has a key, then signed, and the
// headers; Herald's headers are set last, so the subscription's own headers
// cannot replace them.
func (d *Dispatcher) request(sub *herald.Subscription, j job, now time.Time) (*url.URL, http.Header, []byte, error) {
	u, err := url.Parse(sub.URL)
	if err != nil {
		// The error would repeat the URL, which may carry a token.
		return nil, nil, nil, errors.New("invalid endpoint URL")
	}
	body, msgID := buildBody(sub, j, now)
	h := make(http.Header, len(sub.Headers)+8)
	for k, v := range sub.Headers {
		if ck := textproto.CanonicalMIMEHeaderKey(k); !d.reserved[ck] {
			h[ck] = []string{v}
		}
	}
	contentType := "application/json"
	if len(sub.EncryptionKey) > 0 {
		enc, iv, err := webhook.Encrypt(sub.EncryptionKey, body)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("encrypt: %w", err)
		}
		body = enc
		h[d.hdrIV] = []string{iv}
		contentType = "text/plain"
	}
	sig, err := webhook.Sign(webhook.SignParams{
		Scheme:       sub.SignatureScheme,
		HeaderPrefix: d.cfg.HeaderPrefix,
		Secrets:      sub.ActiveSecrets(now),
		MsgID:        msgID,
		Timestamp:    now,
		Body:         body,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sign: %w", err)
	}
	for k, v := range sig {
		h[k] = v
	}
	h["Content-Type"] = []string{contentType}
	h["User-Agent"] = []string{d.ua}
	h["X-Trace-Id"] = []string{j.items[0].Delivery.TraceID}
	h[d.hdrSource] = []string{"webhook"}
	return u, h, body, nil
}

// buildBody returns the body of a job and its message id: the event id for a
// single event, the batch id for a batch.
func buildBody(sub *herald.Subscription, j job, now time.Time) ([]byte, string) {
	events := make([]*herald.Event, len(j.items))
	for i := range j.items {
		events[i] = &j.items[i].Event
	}
	buf := make([]byte, 0, bodySize(sub, events))
	if j.batchID == "" {
		return appendEvent(buf, sub, events[0]), events[0].ID
	}
	return appendBatch(buf, sub, events, now), j.batchID
}

// reservedHeaders are the header names Herald sets, or that the transport
// owns: a subscription's headers may not set them.
func reservedHeaders(prefix string) map[string]bool {
	names := []string{
		"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection", "Host",
		"Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
		"User-Agent", "X-Trace-Id",
		"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "X-Hub-Signature-256",
		webhook.SourceHeader(prefix), webhook.SignatureHeader(prefix), webhook.EncryptionIVHeader(prefix),
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[textproto.CanonicalMIMEHeaderKey(n)] = true
	}
	return m
}

// readResponse reads at most MaxResponseRead bytes of a response body (so a
// small answer leaves its connection reusable) and keeps at most
// herald.MaxStoredResponse of them, as valid UTF-8 without NUL bytes (which
// a text column may refuse).
func (d *Dispatcher) readResponse(r io.Reader) string {
	buf := d.bufs.Get().(*[herald.MaxStoredResponse]byte)
	defer d.bufs.Put(buf)
	lr := io.LimitReader(r, MaxResponseRead)
	n, _ := io.ReadFull(lr, buf[:])
	_, _ = io.Copy(io.Discard, lr)
	return cleanText(buf[:n])
}

func cleanText(b []byte) string {
	if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
		return string(b)
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	for len(s) > herald.MaxStoredResponse {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// describe turns a request error into an attempt's error text, without the
// URL (it may carry a token).
func describe(err error, ctx context.Context, timeout time.Duration) string {
	switch {
	case errors.Is(err, netguard.ErrBlocked):
		var ue *url.Error
		if errors.As(err, &ue) {
			return "refused: " + ue.Err.Error()
		}
		return "refused: " + err.Error()
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("timeout: no response within %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// outcomesOf turns the result of a job's attempt into one outcome per
// delivery. Members of a batch share the attempt; each keeps its own count.
func (d *Dispatcher) outcomesOf(sub *herald.Subscription, j job, res *result, now time.Time) []herald.Outcome {
	out := make([]herald.Outcome, len(j.items))
	ok := res.success()
	rnd := d.cfg.Rand()
	for i := range j.items {
		dl := &j.items[i].Delivery
		o := herald.Outcome{
			DeliveryID: dl.ID,
			Owner:      d.cfg.Owner,
			BatchID:    j.batchID,
			Now:        now,
			Attempt: herald.Attempt{
				N:            dl.Attempts + 1,
				StartedAt:    res.started,
				Duration:     res.duration,
				StatusCode:   res.status,
				Error:        res.err,
				ResponseBody: res.body,
			},
		}
		if ok {
			o.Status = herald.DeliverySucceeded
		} else {
			s := reschedule(sub.Delivery.Retry, *dl, dl.Attempts+1, res.started, now, res.retryAfter, res.hasRA, rnd)
			if s.final {
				o.Status = herald.DeliveryFailed
			} else {
				o.Status = herald.DeliveryPending
				o.NextAttemptAt = s.next.Truncate(time.Microsecond)
				o.LastSleep = s.sleep
			}
		}
		out[i] = o
	}
	return out
}

// observe counts an attempt in the metrics and logs it (never a body or a
// secret).
func (d *Dispatcher) observe(sub *herald.Subscription, j job, res *result, outs []herald.Outcome, now time.Time) {
	d.metrics.duration.Observe(res.duration.Seconds())
	if res.success() {
		d.metrics.success.Inc()
		for _, it := range j.items {
			if !it.Event.ReceivedAt.IsZero() {
				d.metrics.latency.Observe(max(now.Sub(it.Event.ReceivedAt), 0).Seconds())
			}
		}
		if !d.log.Enabled(context.Background(), slog.LevelDebug) {
			return
		}
	}
	first := j.items[0].Delivery
	attrs := []any{
		"tenant_id", sub.TenantID, "subscription_id", sub.ID, "delivery_id", first.ID,
		"attempt", first.Attempts + 1, "status_code", res.status, "duration", res.duration,
	}
	if j.batchID != "" {
		attrs = append(attrs, "batch_id", j.batchID, "batch_size", len(j.items))
	}
	if res.success() {
		d.log.Debug("delivered", attrs...)
		return
	}
	d.metrics.failure.Inc()
	if res.err != "" {
		attrs = append(attrs, "error", res.err)
	}
	if outs[0].Status == herald.DeliveryFailed {
		d.metrics.finalFail.Add(float64(countStatus(outs, herald.DeliveryFailed)))
		d.log.Warn("delivery failed for good", attrs...)
		return
	}
	attrs = append(attrs, "next_attempt_at", outs[0].NextAttemptAt)
	d.log.Info("attempt failed; will retry", attrs...)
}

func countStatus(outs []herald.Outcome, status string) int {
	n := 0
	for _, o := range outs {
		if o.Status == status {
			n++
		}
	}
	return n
}
