package audit_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
)

// BenchmarkVerify measures live and offline verification of a ledger of
// 20,000 events; it reports events verified per second.
func BenchmarkVerify(b *testing.B) {
	const n = 20000
	e := newBenchEnv(b, n)
	cp, err := e.ledger.Checkpoint(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("live", func(b *testing.B) {
		for b.Loop() {
			rep, err := e.ledger.Verify(b.Context())
			if err != nil || !rep.OK() {
				b.Fatal(rep, err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	var export bytes.Buffer
	if _, err := e.ledger.Export(b.Context(), &export); err != nil {
		b.Fatal(err)
	}
	b.Run("export", func(b *testing.B) {
		for b.Loop() {
			rep, err := audit.VerifyExport(bytes.NewReader(export.Bytes()), [][]byte{cp.Note}, e.ledger.VerifierKey())
			if err != nil || !rep.OK() {
				b.Fatal(rep, err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func newBenchEnv(b *testing.B, n int) *env {
	b.Helper()
	e := newEnvTB(b, audit.LedgerConfig{})
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				if err := e.ledger.Record(b.Context(), event(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return e
}
