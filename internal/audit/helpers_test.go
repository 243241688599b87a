package audit_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
)

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func jsonLine(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// treeRoot returns the tree root of export lines' leaf hashes.
func treeRoot(lines []audit.ExportLine) (int64, tlog.Hash) {
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, l := range lines {
		hs, err := tlog.StoredHashesForRecordHash(int64(i), l.LeafHash, r)
		if err != nil {
			panic(err)
		}
		hashes = append(hashes, hs...)
	}
	root, err := tlog.TreeHash(int64(len(lines)), r)
	if err != nil {
		panic(err)
	}
	return int64(len(lines)), root
}
