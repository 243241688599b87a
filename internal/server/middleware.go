package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mandatehq/mandate/internal/admin"
)

// newRegistry returns the server's own metrics registry (never the global
// one) with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// httpMetrics counts and times HTTP requests by listener and route (the
// ServeMux pattern that matched, so label values are bounded).
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// series memoizes the counter and histogram of each listener, route
	// and status code (bounded as the labels are): looking them up in
	// the vectors hashes and checks every label value, on every request.
	series sync.Map // seriesKey -> *requestSeries
}

type seriesKey struct {
	listener, route string
	code            int
}

type requestSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// seriesFor returns the metrics of requests to route on listener answered
// with code.
func (m *httpMetrics) seriesFor(listener, route string, code int) *requestSeries {
	k := seriesKey{listener, route, code}
	if s, ok := m.series.Load(k); ok {
		return s.(*requestSeries)
	}
	s := &requestSeries{
		requests: m.requests.WithLabelValues(listener, route, strconv.Itoa(code)),
		latency:  m.latency.WithLabelValues(listener, route),
	}
	m.series.Store(k, s)
	return s
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mandate", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests served, by listener, route and status code.",
		}, []string{"listener", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mandate", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request latency, by listener and route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"listener", "route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// wrap instruments mux. The route label is the pattern mux matched
// (r.Pattern, set by ServeMux on the request it is given).
func (m *httpMetrics) wrap(listener string, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		series := m.seriesFor(listener, route, sw.code)
		series.requests.Inc()
		series.latency.Observe(time.Since(start).Seconds())
	})
}

// statusWriter records the status code. Unwrap lets http.ResponseController
// reach the underlying writer's Flush and deadlines.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// localAdmin marks every request as coming from the local admin: it is
// mounted only on the admin socket, which only its owner can connect to.
func localAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(admin.WithActor(r.Context(), admin.ActorLocal)))
	})
}

// parseTokenHashes decodes admin.token_hashes (validated by Config).
func parseTokenHashes(hs []string) ([][]byte, error) {
	out := make([][]byte, 0, len(hs))
	for _, h := range hs {
		b, err := parseTokenHash(h)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// maxAdminTokenLen bounds the bearer token hashed on each admin request.
const maxAdminTokenLen = 512

// adminTokens checks admin bearer tokens against their SHA-256 digests.
type adminTokens struct {
	hashes [][]byte
	// persons names the person a token's holder is, by the token's
	// SHA-256, for the tokens configured with person= (approvals.go).
	persons map[[32]byte]string
}

// check reports whether r carries "Authorization: Bearer <token>" whose
// SHA-256 is one of the hashes, and returns the actor recorded for it:
// "admin:token:<first 8 hex digits of the hash>", which names the token
// without revealing it. The digest is compared with every hash in
// constant time.
func (a adminTokens) check(r *http.Request) (actor, problem string) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > maxAdminTokenLen {
		return "", "admin token required: send Authorization: Bearer <admin token>"
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for _, h := range a.hashes {
		match |= subtle.ConstantTimeCompare(sum[:], h)
	}
	if match != 1 {
		return "", "invalid admin token"
	}
	return "admin:token:" + hex.EncodeToString(sum[:4]), ""
}

// requireAdminToken admits a request on the TCP listener only with a valid
// admin token (see adminTokens.check). With no hashes configured the admin
// API is closed on TCP.
func requireAdminToken(tokens adminTokens, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(tokens.hashes) == 0 {
			unauthorized(w, "the admin API is not enabled on this listener: configure admin.token_hashes, or use the local admin socket")
			return
		}
		actor, problem := tokens.check(r)
		if problem != "" {
			if r.Header.Get("Authorization") != "" {
				log.Warn("admin request refused", "reason", problem, "remote", r.RemoteAddr, "path", r.URL.Path)
			}
			unauthorized(w, problem)
			return
		}
		next.ServeHTTP(w, r.WithContext(admin.WithActor(r.Context(), actor)))
	})
}

// unauthorized writes a 401 RFC 9457 problem.
func unauthorized(w http.ResponseWriter, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="mandate-admin"`)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(http.StatusUnauthorized),
		"status": http.StatusUnauthorized, "detail": detail,
	})
}
