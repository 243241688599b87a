package server

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md's key table from the key table")

const (
	docPath    = "../../docs/configuration.md"
	beginMark  = "<!-- BEGIN KEYS: generated from internal/server/keys.go; go test ./internal/server -update -->\n"
	endMarkTag = "<!-- END KEYS -->"
)

// The reference table in docs/configuration.md is the key table.
func TestConfigurationDocInSync(t *testing.T) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, beginMark)
	end := strings.Index(doc, endMarkTag)
	if start < 0 || end < start {
		t.Fatalf("%s: no %q … %q section", docPath, beginMark, endMarkTag)
	}
	want := MarkdownReference()
	got := doc[start+len(beginMark) : end]
	if got == want {
		return
	}
	if *update {
		doc = doc[:start+len(beginMark)] + want + doc[end:]
		if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is out of date with the key table; run: go test ./internal/server -run TestConfigurationDocInSync -update", docPath)
}
