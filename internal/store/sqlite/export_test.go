package sqlite

import "context"

// WriterPragma runs a PRAGMA on the writer's single connection, so that
// it applies to every later write: tests use max_page_count for a full
// disk and query_only for a read-only database, SQLite's own errors.
func WriterPragma(ctx context.Context, db *DB, pragma string) error {
	_, err := db.writer.ExecContext(ctx, "PRAGMA "+pragma)
	return err
}

// CheckFiles runs the identity check now, as the watcher would.
func CheckFiles(db *DB) error { return db.checkFiles() }
