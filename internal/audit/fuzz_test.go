package audit_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mandatehq/mandate/internal/audit"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// fuzzKey is a fixed ledger key, so that seed checkpoints stay valid.
var fuzzSKey, fuzzVKey = func() (string, string) {
	s, v, err := note.GenerateKey(bytes.NewReader(make([]byte, 32)), "fuzz.example/audit")
	if err != nil {
		panic(err)
	}
	return s, v
}()

// fuzzExport is a small valid export and its checkpoint, signed with the
// fixed key.
func fuzzExport() (export, checkpoint []byte) {
	var lines [][]byte
	var leaves []audit.ExportLine
	for i := range 5 {
		ev := event(i)
		_ = audit.Normalize(&ev, t0)
		ev.Seq = int64(i + 1)
		data, _ := audit.Canonical(&ev)
		leaves = append(leaves, audit.ExportLine{Event: ev, LeafHash: audit.LeafHash(data)})
	}
	for _, l := range leaves {
		b, _ := jsonMarshal(l)
		lines = append(lines, b)
	}
	export = append(bytes.Join(lines, []byte("\n")), '\n')
	rep, root := treeRoot(leaves)
	_ = rep
	signer, _ := note.NewSigner(fuzzSKey)
	checkpoint, _ = note.Sign(&note.Note{Text: fmt.Sprintf("fuzz.example/audit\n%d\n%s\n", len(leaves), root)}, signer)
	return export, checkpoint
}

func fuzzSeeds() (exports, checkpoints, events [][]byte) {
	export, cp := fuzzExport()
	lines := bytes.SplitAfter(export, []byte("\n"))
	exports = [][]byte{
		export,
		bytes.Join(lines[:3], nil),
		bytes.Replace(export, []byte(`"seq":2`), []byte(`"seq":3`), 1),
		[]byte(`{"ledger_prefix":{"size":1,"hashes":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}` + "\n"),
		[]byte("{}\n"), []byte("not json\n"), nil,
	}
	checkpoints = [][]byte{
		cp,
		bytes.Replace(cp, []byte("\n5\n"), []byte("\n6\n"), 1),
		[]byte("fuzz.example/audit\n5\nAAAA\n\n— fuzz.example/audit AAAA\n"),
		[]byte("fuzz.example/audit\n-1\n"), nil,
	}
	for _, l := range lines[:2] {
		var el audit.ExportLine
		_ = jsonUnmarshal(string(l), &el)
		b, _ := audit.Canonical(&el.Event)
		events = append(events, b)
	}
	events = append(events, []byte(`{"time":"0001-01-01T00:00:00Z","type":""}`), []byte(`{"seq":1}`), []byte(`[]`))
	return exports, checkpoints, events
}

// TestFuzzSeedCorpora keeps testdata/fuzz in step with fuzzSeeds; run
// with -update-seeds to rewrite it.
func TestFuzzSeedCorpora(t *testing.T) {
	exports, checkpoints, events := fuzzSeeds()
	for name, seeds := range map[string][][]byte{"FuzzVerifyExport": exports, "FuzzParseCheckpoint": checkpoints, "FuzzParseEvent": events,
		"FuzzParseAnchor": anchorSeeds()} {
		dir := filepath.Join("testdata", "fuzz", name)
		for i, s := range seeds {
			path := filepath.Join(dir, fmt.Sprintf("seed%d", i+1))
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if *updateSeeds {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != content {
				t.Errorf("%s is missing or stale; run go test ./internal/audit -run TestFuzzSeedCorpora -update-seeds", path)
			}
		}
	}
}

func FuzzVerifyExport(f *testing.F) {
	_, cp := fuzzExport()
	exports, _, _ := fuzzSeeds()
	for _, s := range exports {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, export []byte) {
		rep, err := audit.VerifyExport(bytes.NewReader(export), [][]byte{cp}, fuzzVKey)
		if err != nil {
			t.Fatalf("VerifyExport() = %v; only read errors are errors", err)
		}
		if rep.OK() && rep.Events < 5 && !strings.Contains(string(export), "ledger_prefix") {
			t.Fatalf("VerifyExport() accepted an export with %d events against a checkpoint of 5", rep.Events)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	_, cps, _ := fuzzSeeds()
	for _, s := range cps {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := audit.ParseCheckpoint(msg, fuzzVKey)
		if err != nil {
			return
		}
		if cp.Origin != "fuzz.example/audit" || cp.Size < 0 {
			t.Fatalf("ParseCheckpoint() = %+v", cp)
		}
		if _, _, _, err := audit.ParseCheckpointBody(cp.Body()); err != nil {
			t.Fatalf("ParseCheckpointBody(Body()) = %v", err)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	_, _, evs := fuzzSeeds()
	for _, s := range evs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := audit.ParseEvent(data)
		if err != nil {
			return
		}
		again, err := audit.Canonical(ev)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("Canonical(ParseEvent(%q)) = %q, %v; want the input", data, again, err)
		}
	})
}

// anchorSeeds are anchor files: a good one (a signed checkpoint note, as
// WriteAnchor writes it), and the ways a torn, hand-edited or foreign file
// differs from one.
func anchorSeeds() [][]byte {
	_, cp := fuzzExport()
	text, sigs, _ := bytes.Cut(cp, []byte("\n\n"))
	return [][]byte{
		cp,
		append(bytes.Clone(cp), cp[bytes.IndexByte(cp, 0xe2):]...), // two signature lines
		append(bytes.Clone(text), '\n'),                            // no signature
		cp[:len(cp)-1],                                             // no final newline: torn
		cp[:len(cp)/2],                                             // torn in the middle
		bytes.Replace(cp, []byte("\n5\n"), []byte("\n05\n"), 1),    // non-canonical size
		bytes.Replace(cp, []byte("\n5\n"), []byte("\n-5\n"), 1),
		append(append(bytes.Clone(text), "\n\n\n"...), sigs...), // an extra blank line
		append([]byte("\ufeff"), cp...),                         // a byte order mark
		bytes.ReplaceAll(cp, []byte("\n"), []byte("\r\n")),      // CRLF
		[]byte("fuzz.example/audit\n5\nAAAA\n\n— fuzz.example/audit AAAA\n"),
		bytes.Repeat([]byte("a"), audit.MaxCheckpointSize+1),
		nil,
	}
}

// FuzzParseAnchor: whatever an anchor file holds, ParseAnchor returns an
// anchor whose checkpoint body parses back to the same values and whose
// Note is the input, or an error — and every note ParseCheckpoint accepts
// (what WriteAnchor writes) is a readable anchor of the same tree.
func FuzzParseAnchor(f *testing.F) {
	for _, s := range anchorSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := audit.ParseAnchor(b)
		cp, cperr := audit.ParseCheckpoint(b, fuzzVKey)
		if cperr == nil && (err != nil || a.Origin != cp.Origin || a.Size != cp.Size || a.Root != cp.Root) {
			t.Fatalf("ParseAnchor(a verified checkpoint %q) = %+v, %v; want %s %d %x", b, a, err, cp.Origin, cp.Size, cp.Root)
		}
		if err != nil {
			return
		}
		if len(b) > audit.MaxCheckpointSize || !bytes.Equal(a.Note, b) || a.Size < 0 {
			t.Fatalf("ParseAnchor(%q) = %+v: a note over the limit, not the input, or a negative size", b, a)
		}
		body := (&audit.Checkpoint{Origin: a.Origin, Size: a.Size, Root: a.Root}).Body()
		if !bytes.HasPrefix(b, []byte(body+"\n")) {
			t.Fatalf("ParseAnchor(%q) = %s %d %s, whose body %q does not begin the note", b, a.Origin, a.Size, a.RootString(), body)
		}
	})
}
