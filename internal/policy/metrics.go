package policy

import "github.com/prometheus/client_golang/prometheus"

// loaderMetrics count reloads and the live set's size.
type loaderMetrics struct {
	ok, failed prometheus.Counter
	policies   prometheus.Gauge
	reloads    *prometheus.CounterVec
}

func newLoaderMetrics(set string) loaderMetrics {
	labels := prometheus.Labels{"set": set}
	m := loaderMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_policy_reloads_total",
			Help: "Policy set reloads by result (ok, failed: the last good set stayed live).", ConstLabels: labels}, []string{"result"}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mandate_policy_policies",
			Help: "Policies in the live policy set.", ConstLabels: labels}),
	}
	m.ok, m.failed = m.reloads.WithLabelValues("ok"), m.reloads.WithLabelValues("failed")
	return m
}

// Collectors returns the loader's Prometheus collectors.
func (l *Loader) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.metrics.reloads, l.metrics.policies}
}
