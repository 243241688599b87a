package sqlite

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the database's Prometheus metrics: how far the
// ledger's indexer is behind its journal, and how often it failed.
func (db *DB) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mandate_audit_index_lag_events",
			Help: "Ledger events durable in the journal and not yet copied into the ledger tables.",
		}, func() float64 {
			db.lmu.Lock()
			defer db.lmu.Unlock()
			return float64(db.ledger.appended - db.ledger.indexed)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mandate_audit_journal_bytes",
			Help: "Size of the ledger journal, emptied once it passes its limit and the indexer has caught up.",
		}, func() float64 {
			db.lmu.Lock()
			defer db.lmu.Unlock()
			return float64(db.ledger.j.size)
		}),
		db.indexFailures,
	}
}
