// Package jsontest generates random JSON for tests: values with the
// whitespace, key orders, duplicates and escapes that canonical encoders
// and strict decoders must get right.
package jsontest

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// Value returns a random JSON value, sometimes with whitespace,
// unsorted or duplicate keys, or escapes a canonical encoder would write
// differently.
func Value(rng *rand.Rand, depth int) []byte {
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
			b.WriteString(String(rng) + ws() + ":" + ws())
			b.Write(Value(rng, depth+1))
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
			b.Write(Value(rng, depth+1))
		}
		b.WriteString("]")
		return []byte(b.String())
	case 3, 4:
		return []byte(String(rng))
	case 5:
		return []byte([]string{"true", "false", "null"}[rng.IntN(3)])
	default:
		return []byte([]string{"0", "-0", "12", "-3.25", "1e400", "6.02E+23", "1.0e-7", strconv.Itoa(rng.IntN(1e6))}[rng.IntN(8)])
	}
}

// jsonStringPieces are what String builds strings of, escapes
// included.
var jsonStringPieces = []string{"a", "b", "c", "key", "é", "日本", "<&>", " ", "\x7f", `\"`, `\\`, `\n`, `\u00e9`, `\u2028`, "\u2029", `\/`}

// String returns a random JSON string literal, escapes included.
func String(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteByte('"')
	for range rng.IntN(4) {
		b.WriteString(jsonStringPieces[rng.IntN(len(jsonStringPieces))])
	}
	b.WriteByte('"')
	return b.String()
}
