package policy

import (
	"bytes"
	"runtime"
	"sync"

	cedar "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Parallel parsing of large sources. cedar-go parses a document on one
// core; a large file is cut at policy boundaries (a ";" outside strings
// and comments) into pieces parsed concurrently. Each piece is padded with
// the newlines and spaces that precede it, so every position it reports
// is the position in the whole file. If any piece fails to parse, the
// whole document is parsed again so that the error is exactly cedar-go's.
const (
	// parallelParseMin is the smallest source parsed in pieces.
	parallelParseMin = 32 << 10
	// parallelPieceMin is the smallest piece worth a goroutine.
	parallelPieceMin = 16 << 10
)

// parseSource parses one policy document, in parallel when it is large.
func parseSource(name string, text []byte) (cedar.PolicyList, error) {
	pieces := runtime.GOMAXPROCS(0)
	if n := len(text) / parallelPieceMin; n < pieces {
		pieces = n
	}
	if len(text) < parallelParseMin || pieces < 2 {
		return cedar.NewPolicyListFromBytes(name, text)
	}
	cuts := splitPolicies(text, pieces)
	if len(cuts) < 2 {
		return cedar.NewPolicyListFromBytes(name, text)
	}
	lists := make([]cedar.PolicyList, len(cuts))
	errs := make([]error, len(cuts))
	var wg sync.WaitGroup
	start := 0
	for i, end := range cuts {
		piece := padded(text, start, end)
		// Lines and columns are right thanks to the padding; byte offsets
		// are shifted by the difference between padding and prefix.
		shift := start - (len(piece) - (end - start))
		wg.Go(func() {
			lists[i], errs[i] = cedar.NewPolicyListFromBytes(name, piece)
			for _, p := range lists[i] {
				(*xast.Policy)(p.AST()).Position.Offset += shift
			}
		})
		start = end
	}
	wg.Wait()
	var out cedar.PolicyList
	for i := range lists {
		if errs[i] != nil {
			return cedar.NewPolicyListFromBytes(name, text)
		}
		out = append(out, lists[i]...)
	}
	return out, nil
}

// padded returns text[start:end] preceded by the newlines and spaces that
// put its first byte at the same line and column as in text.
func padded(text []byte, start, end int) []byte {
	lines := bytes.Count(text[:start], []byte{'\n'})
	col := start - (bytes.LastIndexByte(text[:start], '\n') + 1)
	out := make([]byte, 0, lines+col+end-start)
	out = append(out, bytes.Repeat([]byte{'\n'}, lines)...)
	out = append(out, bytes.Repeat([]byte{' '}, col)...)
	return append(out, text[start:end]...)
}

// splitPolicies returns the end offsets of up to n pieces of text, each
// ending just after a ";" outside string literals and "//" comments; the
// last ends at len(text).
func splitPolicies(text []byte, n int) []int {
	target := len(text) / n
	var cuts []int
	inString, escaped, inComment := false, false, false
	next := target
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case inComment:
			if c == '\n' {
				inComment = false
			}
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '/' && i+1 < len(text) && text[i+1] == '/':
			inComment = true
		case c == ';' && i+1 >= next && len(cuts) < n-1:
			cuts = append(cuts, i+1)
			next = i + 1 + target
		}
	}
	return append(cuts, len(text))
}
