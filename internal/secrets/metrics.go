package secrets

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	leases         *prometheus.GaugeVec
	revokeFailures prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		leases: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mandate_secret_leases",
			Help: "Secret leases by status (active, expired, revoked, failed: a revocation being retried), as of the last sweep."}, []string{"status"}),
		revokeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_secret_revoke_failures_total",
			Help: "Attempts to revoke a lease's credential that failed (each is retried with backoff)."}),
	}
	for _, s := range []LeaseStatus{LeaseActive, LeaseExpired, LeaseRevoked, LeaseFailed} {
		m.leases.WithLabelValues(string(s)).Set(0)
	}
	return m
}

// Collectors returns the broker's Prometheus collectors.
func (b *Broker) Collectors() []prometheus.Collector {
	return []prometheus.Collector{b.metrics.leases, b.metrics.revokeFailures}
}
