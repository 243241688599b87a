package access

import "github.com/prometheus/client_golang/prometheus"

// pipelineMetrics count and time decisions.
type pipelineMetrics struct {
	decisions *prometheus.CounterVec
	// allow, deny and held are decisions' children, resolved once.
	allow, deny, held prometheus.Counter
	seconds           prometheus.Histogram
	shadowDiffers     prometheus.Counter
}

func newPipelineMetrics() pipelineMetrics {
	m := pipelineMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_access_decisions_total",
			Help: "Decisions made by the access pipeline, by decision (allow, deny, approval_required)."}, []string{"decision"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mandate_access_decision_seconds",
			Help:    "Duration of one access decision, including its durable audit event.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05}}),
		shadowDiffers: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_policy_shadow_differences_total",
			Help: "Decisions the shadow (candidate) policy set would have made differently."}),
	}
	m.allow = m.decisions.WithLabelValues("allow")
	m.deny = m.decisions.WithLabelValues("deny")
	m.held = m.decisions.WithLabelValues("approval_required")
	return m
}

// Collectors returns the pipeline's Prometheus collectors.
func (p *Pipeline) Collectors() []prometheus.Collector {
	return []prometheus.Collector{p.metrics.decisions, p.metrics.seconds, p.metrics.shadowDiffers}
}
