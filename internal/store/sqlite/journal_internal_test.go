package sqlite

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
)

// TestJournalAppendReplay appends batches through the mapping and
// through writes (file systems that cannot allocate ahead), with and
// without syncing, leaves the journal as a killed process would (no
// Close to trim it), and replays it: every batch comes back, in order.
// About 5 MB of frames move the mapped window on.
func TestJournalAppendReplay(t *testing.T) {
	for _, writes := range []bool{false, true} {
		for _, sync := range []bool{false, true} {
			t.Run(fmt.Sprintf("writes=%v,sync=%v", writes, sync), func(t *testing.T) {
				t.Parallel()
				path := filepath.Join(t.TempDir(), "mandate.db-ledger")
				j, err := openJournal(path, sync)
				if err != nil {
					t.Fatal(err)
				}
				j.writes = writes
				const batches = 50
				for i := range batches {
					if err := j.append(journalBatch(i)); err != nil {
						t.Fatalf("append %d: %v", i, err)
					}
				}
				// Only Linux maps the journal (journal_map_linux.go).
				wantMapped := !writes && runtime.GOOS == "linux"
				if mapped := j.m != nil; mapped != wantMapped || wantMapped && j.mapOff == 0 {
					t.Errorf("mapped %v from byte %d after %d bytes of frames; want mapped %v, a window moved on", mapped, j.mapOff, j.size, wantMapped)
				}
				// A killed process leaves the file as it is.
				j.unmap()
				j.f.Close()

				j, err = openJournal(path, sync)
				if err != nil {
					t.Fatal(err)
				}
				defer j.close()
				n := 0
				err = j.replay(func(b *audit.Batch) error {
					want := journalBatch(n)
					if b.Size != want.Size || len(b.Records) != 1 || !bytes.Equal(b.Records[0].Data, want.Records[0].Data) {
						return fmt.Errorf("batch %d: size %d with %d records, want %d with 1 (%d bytes)", n, b.Size, len(b.Records), want.Size, len(want.Records[0].Data))
					}
					n++
					return nil
				})
				if err != nil || n != batches {
					t.Fatalf("replay: %d batches, %v; want %d", n, err, batches)
				}
			})
		}
	}
}

// journalBatch is the i-th of a run of one-event batches of about 100 KB.
func journalBatch(i int) *audit.Batch {
	b := codecBatch()
	b.Size = int64(i + 1)
	b.Records = b.Records[:1]
	b.Records[0].Seq = int64(i + 1)
	b.Records[0].Data = bytes.Repeat([]byte{byte('a' + i%26)}, 100<<10)
	return b
}

// BenchmarkJournalAppend compares the two ways of appending a frame on
// one platform that has both: copying into the mapping (Linux) and
// writing, the portable fallback every other platform uses. Frames are
// of a typical group commit (8 events of about 600 bytes).
func BenchmarkJournalAppend(b *testing.B) {
	batch := &audit.Batch{Size: 8, HashStart: 0}
	for i := range 8 {
		batch.Records = append(batch.Records, audit.Record{Seq: int64(i), Type: audit.TypeActionDecided, Data: bytes.Repeat([]byte("x"), 600)})
	}
	for _, writes := range []bool{false, true} {
		b.Run(fmt.Sprintf("writes=%v", writes), func(b *testing.B) {
			if !writes && runtime.GOOS != "linux" {
				b.Skip("the journal is mapped only on Linux")
			}
			j, err := openJournal(filepath.Join(b.TempDir(), "mandate.db-ledger"), false)
			if err != nil {
				b.Fatal(err)
			}
			defer j.close()
			j.writes = writes
			for b.Loop() {
				if err := j.append(batch); err != nil {
					b.Fatal(err)
				}
				if j.size > 64<<20 {
					if err := j.reset(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
