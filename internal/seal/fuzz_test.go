package seal

import (
	"bytes"
	"testing"
)

// fuzzKEK is fixed so that the corpus in testdata keeps meaning the same
// thing between runs.
var fuzzKEK, _ = NewKEK(bytes.Repeat([]byte{7}, KEKSize))

// FuzzParse feeds arbitrary bytes to the sealed-blob parser and to Open:
// neither may panic, Open may succeed only on what Seal produced, and what
// Parse accepts re-serializes to exactly the input.
func FuzzParse(f *testing.F) {
	r, err := NewKeyring(fuzzKEK)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := r.Seal("p", "id", []byte("value"))
	f.Add(good)
	f.Add([]byte("mseal"))
	f.Add([]byte("mseal\x01\x04kek-"))
	f.Add([]byte("mseal\x02\x01a"))
	f.Add([]byte(`{"kty":"OKP","d":"x"}`))
	f.Add(append([]byte("mseal\x01\x40"), bytes.Repeat([]byte("a"), 200)...))
	f.Fuzz(func(t *testing.T, blob []byte) {
		b, err := Parse(blob)
		if err != nil {
			if _, oerr := r.Open("p", "id", blob); oerr == nil {
				t.Fatalf("Open accepted what Parse refused (%v)", err)
			}
			return
		}
		var re []byte
		re = append(re, b.header...)
		re = append(re, b.wrappedDEK...)
		re = append(re, b.nonce...)
		re = append(re, b.ciphertext...)
		if !bytes.Equal(re, blob) {
			t.Fatalf("Parse(%x) does not cover its input", blob)
		}
		if b.Version != version1 || b.KEKID == "" || len(b.KEKID) > maxKEKIDLen {
			t.Fatalf("Parse accepted version %d, kek id %q", b.Version, b.KEKID)
		}
		p, err := r.Open("p", "id", blob)
		// Only the seeds Seal made open (each process seals its own).
		if err == nil && string(p) != "value" {
			t.Fatalf("Open accepted a blob Seal did not make: %x -> %q", blob, p)
		}
	})
}
