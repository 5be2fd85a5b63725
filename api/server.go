package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald"
)

// Defaults of Config.
const (
	DefaultMaxEventBytes = 1 << 20
	DefaultHeaderPrefix  = "X-Herald"
	// MaxBatchEvents is the most events one POST /events/batch takes.
	MaxBatchEvents = 1000
	// maxBatchBytes caps the body of POST /events/batch.
	maxBatchBytes = 64 << 20
	// readyTimeout bounds the store ping of GET /readyz.
	readyTimeout = 2 * time.Second
)

// Publisher stores events with their fan-out; publish.Publisher groups
// concurrent calls into one commit.
type Publisher interface {
	Publish(ctx context.Context, reqs []herald.PublishRequest) ([]herald.PublishResult, error)
}

// Config configures the API. Only Store is required.
type Config struct {
	Store herald.Store
	// Publisher stores published events. Default: Store.EventPublish called
	// directly, one commit per request. If it has a Notify() method, the API
	// calls it after queuing work outside a publish (retry, replay,
	// re-activation) so the dispatcher looks at once.
	Publisher Publisher
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// AdminKeyHash is the SHA-256 of the admin key; nil: no admin key.
	AdminKeyHash []byte
	// MaxEventBytes is the largest event accepted, default
	// DefaultMaxEventBytes.
	MaxEventBytes int64
	// TenantPublishRPS limits the events per second one tenant may publish;
	// 0 means no limit.
	TenantPublishRPS float64
	// AllowPrivateNetworks accepts subscription URLs whose host is a
	// loopback, private or otherwise internal address literal.
	AllowPrivateNetworks bool
	// HeaderPrefix is the prefix of Herald's own delivery headers, which
	// subscriptions may not set; default DefaultHeaderPrefix.
	HeaderPrefix string
	// GenerateSecret returns a new signing secret for a scheme. Default: for
	// "standard", "whsec_" and base64 of 32 random bytes; for the others, 32
	// random bytes in hex.
	GenerateSecret func(scheme string) (string, error)
	// ValidSecret checks a signing secret given for a scheme. Default: a
	// "standard" secret is "whsec_" and base64 of 24 to 64 bytes; others are
	// 16 to 512 printable ASCII characters.
	ValidSecret func(scheme, secret string) error
	// ValidScheme reports whether a signature scheme is known. Default: the
	// four of CONTRACT.md §5.2.
	ValidScheme func(string) bool
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
}

// Server is the API's http.Handler.
type Server struct {
	store         herald.Store
	pub           Publisher
	log           *slog.Logger
	now           func() time.Time
	adminHash     []byte
	maxEventBytes int64
	publishRPS    float64
	allowPrivate  bool
	headerPrefix  string
	genSecret     func(string) (string, error)
	validSecret   func(string, string) error
	validScheme   func(string) bool
	metrics       http.Handler

	mux     *http.ServeMux
	routes  []route
	methods []string // every method of the route table
	openapi []byte

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter // per tenant

	// subMu serialises read-modify-write of subscriptions (PATCH, rotate)
	// within this process, so two of them do not undo each other.
	subMu sync.Mutex
}

// New returns the API handler for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	if cfg.MaxEventBytes < 0 {
		return nil, fmt.Errorf("api: Config.MaxEventBytes: must not be negative, got %d", cfg.MaxEventBytes)
	}
	if cfg.TenantPublishRPS < 0 {
		return nil, fmt.Errorf("api: Config.TenantPublishRPS: must not be negative, got %v", cfg.TenantPublishRPS)
	}
	if cfg.AdminKeyHash != nil && len(cfg.AdminKeyHash) != sha256.Size {
		return nil, fmt.Errorf("api: Config.AdminKeyHash: want a %d-byte SHA-256, got %d bytes", sha256.Size, len(cfg.AdminKeyHash))
	}
	s := &Server{
		store:         cfg.Store,
		pub:           cfg.Publisher,
		log:           cfg.Logger,
		now:           cfg.Now,
		adminHash:     cfg.AdminKeyHash,
		maxEventBytes: cfg.MaxEventBytes,
		publishRPS:    cfg.TenantPublishRPS,
		allowPrivate:  cfg.AllowPrivateNetworks,
		headerPrefix:  cfg.HeaderPrefix,
		genSecret:     cfg.GenerateSecret,
		validSecret:   cfg.ValidSecret,
		validScheme:   cfg.ValidScheme,
		metrics:       cfg.Metrics,
		limiters:      map[string]*rate.Limiter{},
	}
	if s.pub == nil {
		s.pub = storePublisher{s}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxEventBytes == 0 {
		s.maxEventBytes = DefaultMaxEventBytes
	}
	if s.headerPrefix == "" {
		s.headerPrefix = DefaultHeaderPrefix
	}
	if s.genSecret == nil {
		s.genSecret = defaultGenerateSecret
	}
	if s.validSecret == nil {
		s.validSecret = defaultValidSecret
	}
	if s.validScheme == nil {
		s.validScheme = defaultValidScheme
	}

	s.routes = routeTable()
	s.mux = http.NewServeMux()
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
		if !slices.Contains(s.methods, rt.Method) {
			s.methods = append(s.methods, rt.Method)
		}
	}
	s.mux.HandleFunc("/", s.unrouted)
	doc, err := json.Marshal(openAPIDocument(s.routes))
	if err != nil {
		return nil, fmt.Errorf("api: openapi document: %w", err)
	}
	s.openapi = doc
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Routes returns the route table: every route the API serves, with who may
// call it.
func (s *Server) Routes() []Route {
	out := make([]Route, len(s.routes))
	for i, rt := range s.routes {
		out[i] = rt.Route
	}
	return out
}

// call is what the wrapper knows about one request.
type call struct {
	requestID string
	tenant    string // the key's tenant
	keyID     string // "" for the admin key
	admin     bool
}

// statusWriter records the status written, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap gives a route its request id, authentication, access check, panic
// recovery and error answer.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{requestID: herald.NewUUID()}
		w := &statusWriter{ResponseWriter: rw}
		w.Header().Set("X-Request-Id", c.requestID)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.fail(w, r, c, fmt.Errorf("panic: %v", v))
			}
			s.log.Debug("request", "request_id", c.requestID, "method", r.Method, "route", rt.Pattern,
				"tenant_id", c.tenant, "status", w.status, "duration", time.Since(start))
		}()
		if rt.Access != Public {
			if err := s.authenticate(r, c); err != nil {
				s.fail(w, r, c, err)
				return
			}
			if rt.Access == Admin && !c.admin {
				s.fail(w, r, c, errForbidden("only the admin key may manage tenants and keys"))
				return
			}
		}
		if err := rt.handle(s, w, r, c); err != nil {
			s.fail(w, r, c, err)
		}
	})
}

// maxKeyLen bounds the Authorization value hashed.
const maxKeyLen = 512

// authenticate finds the tenant of the request's bearer key. Keys are
// compared by their SHA-256, in constant time.
func (s *Server) authenticate(r *http.Request, c *call) error {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return errUnauthorized(`missing API key: send "Authorization: Bearer <key>"`)
	}
	if len(key) > maxKeyLen {
		return errUnauthorized("unknown or revoked API key")
	}
	sum := sha256.Sum256([]byte(key))
	if len(s.adminHash) == sha256.Size && subtle.ConstantTimeCompare(sum[:], s.adminHash) == 1 {
		c.tenant, c.admin = herald.DefaultTenant, true
		return nil
	}
	k, err := s.store.APIKeyByHash(r.Context(), sum[:])
	if errors.Is(err, herald.ErrNotFound) {
		return errUnauthorized("unknown or revoked API key")
	}
	if err != nil {
		return fmt.Errorf("look up api key: %w", err)
	}
	if subtle.ConstantTimeCompare(k.Hash, sum[:]) != 1 || !k.RevokedAt.IsZero() {
		return errUnauthorized("unknown or revoked API key")
	}
	c.tenant, c.keyID = k.TenantID, k.ID
	return nil
}

// unrouted answers requests no route matches: 405 with Allow when the path
// exists under other methods, else 404.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	c := &call{requestID: herald.NewUUID()}
	w.Header().Set("X-Request-Id", c.requestID)
	var allow []string
	for _, m := range s.methods {
		probe := *r
		probe.Method = m
		if _, pattern := s.mux.Handler(&probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		s.fail(w, r, c, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			msg: fmt.Sprintf("%s is not allowed here; use %s", r.Method, strings.Join(allow, ", ")), allow: allow})
		return
	}
	s.fail(w, r, c, &apiError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
}

// notify wakes the dispatcher, if the publisher can.
func (s *Server) notify() {
	if n, ok := s.pub.(interface{ Notify() }); ok {
		n.Notify()
	}
}

// storePublisher publishes straight to the store, one commit per call.
type storePublisher struct{ s *Server }

func (p storePublisher) Publish(ctx context.Context, reqs []herald.PublishRequest) ([]herald.PublishResult, error) {
	return p.s.store.EventPublish(ctx, p.s.now(), reqs)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ *call) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ *call) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: store does not answer", "error", err)
		return &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
			msg: "the store does not answer", retryAfter: storeRetryAfter}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, _ *call) error {
	if s.metrics == nil {
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "metrics are not configured"}
	}
	s.metrics.ServeHTTP(w, r)
	return nil
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ *call) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(s.openapi)
	return nil
}
