package sqlite

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWALRestartsPastLimit: the checkpoint leaves a WAL below its limit
// alone, and restarts one past it, even while readers keep reading, so
// the next write starts it from its beginning and the file is trimmed
// back to at most twice the limit (without restarts a WAL under steady
// reads and writes only ever grows). The background checkpoint is held
// off so that only the test checkpoints.
func TestWALRestartsPastLimit(t *testing.T) {
	const limit = 256 << 10
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "mandate.db"),
		WithWALLimit(limit), WithCheckpointInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.writer.Exec(`CREATE TABLE filler (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	write := func(n int) {
		t.Helper()
		for range n {
			if _, err := db.writer.Exec(`INSERT INTO filler VALUES (randomblob(4096))`); err != nil {
				t.Fatal(err)
			}
		}
	}
	logged := func() int64 {
		t.Helper()
		var busy, logged, copied int64
		if err := db.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &copied); err != nil {
			t.Fatal(err)
		}
		return logged * db.pageSize
	}

	db.restartWAL() // past the migrations' frames
	write(8)
	if db.checkpoint(limit) {
		t.Fatalf("checkpoint restarted a WAL of %d bytes, below its limit of %d", logged(), limit)
	}

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				if err := db.reader.QueryRow(`SELECT count(*) FROM filler`).Scan(&n); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	write(3 * limit / 4096)
	before := logged()
	restarted := db.checkpoint(limit)
	write(1)
	after := logged()
	close(stop)
	readers.Wait()
	if !restarted {
		t.Fatalf("checkpoint did not restart a WAL of %d bytes, past its limit of %d", before, limit)
	}
	if after >= before || after > limit {
		t.Errorf("after the restart and one write the WAL holds %d bytes of frames (%d before); want it started over", after, before)
	}
	fi, err := os.Stat(db.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2*limit {
		t.Errorf("the WAL file is %d bytes after a restart; want it trimmed to at most %d", fi.Size(), 2*limit)
	}
}
