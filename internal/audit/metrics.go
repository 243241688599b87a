package audit

import "github.com/prometheus/client_golang/prometheus"

type ledgerMetrics struct {
	events        prometheus.Counter
	failures      prometheus.Counter
	checkpoints   prometheus.Counter
	treeSize      prometheus.Gauge
	commitSeconds prometheus.Histogram
	batchSize     prometheus.Histogram
	sinkDropped   *prometheus.CounterVec
	sinkFailures  *prometheus.CounterVec
}

func newLedgerMetrics() ledgerMetrics {
	return ledgerMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_audit_events_total",
			Help: "Audit events made durable in the ledger."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_audit_record_failures_total",
			Help: "Audit events that could not be recorded (the action was refused unless the ledger fails open)."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_audit_checkpoints_total",
			Help: "Signed ledger checkpoints made."}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mandate_audit_tree_size",
			Help: "Leaves in the audit ledger's Merkle tree."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mandate_audit_commit_seconds",
			Help:    "Duration of one group commit of audit events.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1}}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mandate_audit_commit_events",
			Help:    "Audit events per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		sinkDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_audit_sink_dropped_total",
			Help: "Audit events a streaming sink dropped because its buffer was full or delivery failed."}, []string{"sink"}),
		sinkFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_audit_sink_failures_total",
			Help: "Failed deliveries to a streaming sink."}, []string{"sink"}),
	}
}

func (m ledgerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.failures, m.checkpoints, m.treeSize, m.commitSeconds, m.batchSize, m.sinkDropped, m.sinkFailures}
}
