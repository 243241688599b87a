package mcpproxy

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestIsCanonical checks Canonical's short way against its long way on
// random JSON: every value canonicalize writes whose strings need no
// escapes must be recognized as canonical, and anything recognized must
// be what canonicalize writes. FuzzCanonical checks the second half on
// arbitrary bytes.
func TestIsCanonical(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	recognized := 0
	for i := range 20000 {
		raw := randomJSON(rng, 0)
		c, err := canonicalize(raw)
		if err != nil {
			t.Fatalf("canonicalize(%s): %v", raw, err)
		}
		for _, in := range [][]byte{raw, c} {
			if isCanonical(in) {
				recognized++
				if !bytes.Equal(in, c) {
					t.Fatalf("value %d: isCanonical(%s), but canonicalize gives %s", i, in, c)
				}
			}
		}
		if !isCanonical(c) && !bytes.ContainsAny(c, `\`+"\u2028\u2029") {
			t.Fatalf("value %d: canonicalize gives %s, which isCanonical does not recognize", i, c)
		}
	}
	if recognized < 5000 {
		t.Errorf("only %d values recognized as canonical; the generator no longer exercises the short way", recognized)
	}
}

// randomJSON returns a random JSON value, sometimes with whitespace,
// unsorted or duplicate keys, or escapes canonicalize would write
// differently.
func randomJSON(rng *rand.Rand, depth int) []byte {
	ws := func() string {
		if rng.IntN(10) == 0 {
			return " "
		}
		return ""
	}
	k := rng.IntN(9)
	if depth > 3 {
		k = 3 + rng.IntN(6)
	}
	switch k {
	case 0, 1:
		var b strings.Builder
		b.WriteString("{" + ws())
		for j := range rng.IntN(5) {
			if j > 0 {
				b.WriteString("," + ws())
			}
			b.WriteString(randomJSONString(rng) + ws() + ":" + ws())
			b.Write(randomJSON(rng, depth+1))
		}
		b.WriteString(ws() + "}")
		return []byte(b.String())
	case 2:
		var b strings.Builder
		b.WriteString("[")
		for j := range rng.IntN(4) {
			if j > 0 {
				b.WriteString("," + ws())
			}
			b.Write(randomJSON(rng, depth+1))
		}
		b.WriteString("]")
		return []byte(b.String())
	case 3, 4:
		return []byte(randomJSONString(rng))
	case 5:
		return []byte([]string{"true", "false", "null"}[rng.IntN(3)])
	default:
		return []byte([]string{"0", "-0", "12", "-3.25", "1e400", "6.02E+23", "1.0e-7", strconv.Itoa(rng.IntN(1e6))}[rng.IntN(8)])
	}
}

// jsonStringPieces are what randomJSONString builds strings of, escapes
// included.
var jsonStringPieces = []string{"a", "b", "c", "key", "é", "日本", "<&>", " ", "\x7f", `\"`, `\\`, `\n`, `\u00e9`, `\u2028`, "\u2029", `\/`}

func randomJSONString(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteByte('"')
	for range rng.IntN(4) {
		b.WriteString(jsonStringPieces[rng.IntN(len(jsonStringPieces))])
	}
	b.WriteByte('"')
	return b.String()
}
