package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func mustKEK(t testing.TB) KEK {
	t.Helper()
	k, err := GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKeyring(t testing.TB, primary KEK, old ...KEK) *Keyring {
	t.Helper()
	r, err := NewKeyring(primary, old...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	r := mustKeyring(t, mustKEK(t))
	for _, p := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte{0xab}, 4096)} {
		blob, err := r.Seal("token.signing_key", "kid-1", p)
		if err != nil {
			t.Fatalf("Seal(%d bytes) = %v", len(p), err)
		}
		if !IsSealed(blob) || r.NeedsReseal(blob) {
			t.Errorf("IsSealed = %v, NeedsReseal = %v for a fresh blob, want true, false", IsSealed(blob), r.NeedsReseal(blob))
		}
		if len(p) >= 8 && bytes.Contains(blob, p) {
			t.Errorf("sealed blob contains the plaintext")
		}
		got, err := r.Open("token.signing_key", "kid-1", blob)
		if err != nil || !bytes.Equal(got, p) {
			t.Errorf("Open() = %x, %v, want %x", got, err, p)
		}
	}
	a, _ := r.Seal("p", "id", []byte("same"))
	b, _ := r.Seal("p", "id", []byte("same"))
	if bytes.Equal(a, b) {
		t.Errorf("two seals of one value are equal: data keys or nonces repeat")
	}
}

// TestSealedBlobBoundToRecord: a blob moved to another row, or used for
// another purpose, does not open.
func TestSealedBlobBoundToRecord(t *testing.T) {
	t.Parallel()
	r := mustKeyring(t, mustKEK(t))
	blob, err := r.Seal("token.signing_key", "kid-1", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, purpose, id string }{
		{"other row", "token.signing_key", "kid-2"},
		{"other purpose", "audit.ledger_key", "kid-1"},
		{"shifted boundary", "token.signing_ke", "ykid-1"},
		{"prefix id", "token.signing_key", "kid-"},
	} {
		if _, err := r.Open(tc.purpose, tc.id, blob); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: Open(%q, %q) = %v, want ErrOpen", tc.name, tc.purpose, tc.id, err)
		}
	}
}

// TestSealedBlobTampering: flipping any bit, truncating or extending the
// blob never opens.
func TestSealedBlobTampering(t *testing.T) {
	t.Parallel()
	r := mustKeyring(t, mustKEK(t))
	blob, _ := r.Seal("p", "id", []byte("secret value"))
	for i := range blob {
		m := bytes.Clone(blob)
		m[i] ^= 0x01
		if got, err := r.Open("p", "id", m); err == nil {
			t.Fatalf("Open(blob with byte %d flipped) = %q, nil, want an error", i, got)
		}
	}
	for n := range len(blob) {
		if _, err := r.Open("p", "id", blob[:n]); err == nil {
			t.Fatalf("Open(blob truncated to %d) = nil error", n)
		}
	}
	if _, err := r.Open("p", "id", append(bytes.Clone(blob), 0)); err == nil {
		t.Errorf("Open(blob with a trailing byte) = nil error")
	}
}

func TestUnknownKEK(t *testing.T) {
	t.Parallel()
	a, b := mustKEK(t), mustKEK(t)
	blob, _ := mustKeyring(t, a).Seal("p", "id", []byte("v"))
	_, err := mustKeyring(t, b).Open("p", "id", blob)
	if !errors.Is(err, ErrUnknownKEK) || !strings.Contains(err.Error(), a.ID()) || !strings.Contains(err.Error(), b.ID()) {
		t.Errorf("Open(under another KEK) = %v, want ErrUnknownKEK naming %s and %s", err, a.ID(), b.ID())
	}
}

// TestKEKRotationRoundTrip: values sealed under the old KEK open while it
// is kept as an old KEK, Reseal moves them to the new primary, and then
// the old KEK is no longer needed.
func TestKEKRotationRoundTrip(t *testing.T) {
	t.Parallel()
	oldK, newK := mustKEK(t), mustKEK(t)
	before := mustKeyring(t, oldK)
	blob, err := before.Seal("secret.value", "s1", []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	during := mustKeyring(t, newK, oldK)
	if !during.NeedsReseal(blob) {
		t.Fatalf("NeedsReseal(blob under old KEK) = false")
	}
	if got, err := during.Open("secret.value", "s1", blob); err != nil || string(got) != "hunter2" {
		t.Fatalf("Open(old blob) during rotation = %q, %v", got, err)
	}
	resealed, err := during.Reseal("secret.value", "s1", blob)
	if err != nil {
		t.Fatal(err)
	}
	if during.NeedsReseal(resealed) {
		t.Errorf("NeedsReseal(resealed) = true")
	}
	after := mustKeyring(t, newK)
	if got, err := after.Open("secret.value", "s1", resealed); err != nil || string(got) != "hunter2" {
		t.Errorf("Open(resealed) with only the new KEK = %q, %v", got, err)
	}
	if _, err := after.Open("secret.value", "s1", blob); !errors.Is(err, ErrUnknownKEK) {
		t.Errorf("Open(old blob) with only the new KEK = %v, want ErrUnknownKEK", err)
	}
	if _, err := during.Reseal("secret.value", "s2", blob); !errors.Is(err, ErrOpen) {
		t.Errorf("Reseal(for another record) = %v, want ErrOpen", err)
	}
	if _, err := NewKeyring(newK, oldK, newK); err == nil {
		t.Errorf("NewKeyring(one KEK twice) = nil error")
	}
}

func TestSealRefusesBadBindings(t *testing.T) {
	t.Parallel()
	r := mustKeyring(t, mustKEK(t))
	for _, tc := range []struct{ purpose, id string }{
		{"", "id"}, {"p", ""}, {"Upper", "id"}, {"sp ace", "id"}, {strings.Repeat("p", MaxPurposeLen+1), "id"},
		{"p", strings.Repeat("i", MaxRecordIDLen+1)},
	} {
		if _, err := r.Seal(tc.purpose, tc.id, nil); err == nil {
			t.Errorf("Seal(%q, %q) = nil error", tc.purpose, tc.id)
		}
	}
	if _, err := r.Seal("p", "id", make([]byte, MaxPlaintextSize+1)); err == nil {
		t.Errorf("Seal(over MaxPlaintextSize) = nil error")
	}
}

func TestParseKEK(t *testing.T) {
	t.Parallel()
	k := mustKEK(t)
	got, err := ParseKEK(k.Text())
	if err != nil || got != k {
		t.Fatalf("ParseKEK(Text()) = %v, %v", got.ID(), err)
	}
	raw := k.key[:]
	std := base64.StdEncoding.EncodeToString(raw)
	for _, bad := range []string{
		"", "   ", std[:43], std + "A", base64.RawStdEncoding.EncodeToString(raw), base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)),
		base64.StdEncoding.EncodeToString(raw[:31]), base64.StdEncoding.EncodeToString(append(raw, 1)),
		base64.StdEncoding.EncodeToString(make([]byte, 32)), std[:20] + "\n" + std[20:],
		// non-canonical: the last character's unused bits set
		std[:42] + string(rune(std[42]+1)) + "=",
	} {
		if _, err := ParseKEK([]byte(bad)); err == nil {
			t.Errorf("ParseKEK(%q) = nil error", bad)
		}
	}
	if _, err := ParseKEK([]byte("\n " + std + "\r\n")); err != nil {
		t.Errorf("ParseKEK(with surrounding space) = %v", err)
	}
}

func TestKEKFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "seal.kek")
	k, created, err := LoadOrCreateKEKFile(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateKEKFile(new) = %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("created KEK file mode = %v, want 0600", st.Mode().Perm())
	}
	again, created, err := LoadOrCreateKEKFile(path)
	if err != nil || created || again != k {
		t.Errorf("LoadOrCreateKEKFile(existing) = %s, %v, %v, want %s, false, nil", again.ID(), created, err, k.ID())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("data directory holds %d entries after creating the KEK, want 1 (no temporary left)", len(ents))
	}

	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateKEKFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("LoadOrCreateKEKFile(mode 0640) = %v, want a refusal naming chmod 600", err)
		}
	}
	bad := filepath.Join(dir, "bad.kek")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKEKFile(bad); err == nil || !strings.Contains(err.Error(), "bad.kek") {
		t.Errorf("LoadOrCreateKEKFile(malformed) = %v, want an error naming the file", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "not a key\n" {
		t.Errorf("a malformed KEK file was replaced")
	}
	if _, _, err := LoadOrCreateKEKFile(dir); err == nil {
		t.Errorf("LoadOrCreateKEKFile(a directory) = nil error")
	}
}

// TestKEKFileCreatedOnce: concurrent first starts agree on one key.
func TestKEKFileCreatedOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "seal.kek")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			k, _, err := LoadOrCreateKEKFile(path)
			if err != nil {
				t.Error(err)
			}
			ids[i] = k.ID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent LoadOrCreateKEKFile returned different keys: %v", ids)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k1, k2 := mustKEK(t), mustKEK(t)
	f1, f2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	for f, k := range map[string]KEK{f1: k1, f2: k2} {
		if err := os.WriteFile(f, k.Text(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"KEK": strings.TrimSpace(string(k2.Text())), "BAD": "nope"}
	getenv := func(n string) string { return env[n] }
	r, _, err := LoadKeyring(Sources{File: f1, OldFiles: []string{f2}})
	if err != nil || r.PrimaryID() != k1.ID() || len(r.KEKIDs()) != 2 {
		t.Errorf("LoadKeyring(file + old) = %v, %v", r, err)
	}
	r, _, err = LoadKeyring(Sources{Env: "KEK", Getenv: getenv})
	if err != nil || r.PrimaryID() != k2.ID() {
		t.Errorf("LoadKeyring(env) = %v, %v", r, err)
	}
	for name, s := range map[string]Sources{
		"file and env":  {File: f1, Env: "KEK", Getenv: getenv},
		"env unset":     {Env: "NONE", Getenv: getenv},
		"env malformed": {Env: "BAD", Getenv: getenv},
		"missing file":  {File: filepath.Join(dir, "nope")},
		"missing old":   {File: f1, OldFiles: []string{filepath.Join(dir, "nope")}},
		"old = primary": {File: f1, OldFiles: []string{f1}},
		"nothing":       {},
	} {
		if _, _, err := LoadKeyring(s); err == nil {
			t.Errorf("%s: LoadKeyring() = nil error", name)
		}
	}
	if _, _, err := LoadKeyring(Sources{File: filepath.Join(dir, "nope"), DefaultFile: filepath.Join(dir, "default")}); err == nil {
		t.Errorf("LoadKeyring(missing configured file) created the default instead of failing")
	}
	if _, err := os.Stat(filepath.Join(dir, "default")); err == nil {
		t.Errorf("default KEK file created although a file was configured")
	}
}
