// Package seal is mandate's envelope encryption for values kept at rest:
// token signing keys, ledger keys and (later) the secrets broker's values.
//
// Each sealed value gets its own fresh AES-256-GCM data key (DEK), which
// encrypts the value; the DEK is itself encrypted ("wrapped") with
// AES-256-GCM under a key-encryption key (KEK) that never enters the store.
// One DEK per value, rather than one per class of values, because the values
// are few and small, so the extra 60 bytes and one extra AES operation per
// value cost nothing, while it keeps every data key used exactly once (a
// random 96-bit nonce can never repeat under it) and means that no key in the
// store, however obtained, opens more than one value.
//
// A sealed blob is versioned and names the KEK that wrapped it, so a Keyring
// holding several KEKs (the primary, which seals, and older ones, which only
// open) can open values sealed before a rotation, and Reseal moves them to
// the primary. Both encryptions authenticate the blob's header and the
// value's purpose and record id (additional authenticated data): a blob
// copied to another row or another purpose does not open.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// Sizes and limits.
const (
	// KEKSize is the size of a key-encryption key: AES-256.
	KEKSize = 32
	// MaxPlaintextSize is the largest value Seal accepts.
	MaxPlaintextSize = 1 << 20
	// MaxPurposeLen and MaxRecordIDLen bound the additional data.
	MaxPurposeLen  = 64
	MaxRecordIDLen = 1024
	// maxKEKIDLen bounds the KEK id in a blob's header.
	maxKEKIDLen = 64
	// MaxBlobSize is the largest sealed blob Parse accepts.
	MaxBlobSize = headerMax + wrappedDEKSize + nonceSize + MaxPlaintextSize + tagSize

	version1       = 1
	dekSize        = 32
	nonceSize      = 12
	tagSize        = 16
	wrappedDEKSize = nonceSize + dekSize + tagSize
	headerMax      = len(magic) + 2 + maxKEKIDLen
)

// magic starts every sealed blob; IsSealed looks for it.
const magic = "mseal"

// Errors. Every error Open returns wraps one of them.
var (
	// ErrMalformed: the bytes are not a sealed blob of a known version.
	ErrMalformed = errors.New("seal: malformed sealed value")
	// ErrUnknownKEK: the blob was wrapped by a KEK the keyring does not
	// hold.
	ErrUnknownKEK = errors.New("seal: sealed by a key-encryption key that is not configured")
	// ErrOpen: authentication failed: the blob was altered, or belongs to
	// another purpose or record.
	ErrOpen = errors.New("seal: sealed value does not open (altered, or sealed for another record or purpose)")
)

// KEK is a key-encryption key. Its ID is derived from the key, so two
// configurations cannot give one key two names or two keys one name.
type KEK struct {
	id  string
	key [KEKSize]byte
}

// NewKEK returns the KEK of 32 key bytes.
func NewKEK(key []byte) (KEK, error) {
	if len(key) != KEKSize {
		return KEK{}, fmt.Errorf("seal: a key-encryption key is %d bytes, got %d", KEKSize, len(key))
	}
	var k KEK
	copy(k.key[:], key)
	if k.key == [KEKSize]byte{} {
		return KEK{}, errors.New("seal: a key-encryption key of zeros is refused")
	}
	sum := sha256.Sum256(append([]byte("mandate seal kek id\x00"), key...))
	k.id = "kek-" + hex.EncodeToString(sum[:6])
	return k, nil
}

// GenerateKEK returns a new random KEK.
func GenerateKEK() (KEK, error) {
	b := make([]byte, KEKSize)
	if _, err := rand.Read(b); err != nil {
		return KEK{}, fmt.Errorf("seal: generate key-encryption key: %w", err)
	}
	return NewKEK(b)
}

// ParseKEK parses the text form of a KEK: standard padded base64 of 32
// bytes (what `openssl rand -base64 32` prints), optionally surrounded by
// white space. Anything else, including non-canonical base64, is refused.
func ParseKEK(text []byte) (KEK, error) {
	s := bytes.TrimSpace(text)
	b, err := base64.StdEncoding.Strict().DecodeString(string(s))
	if err != nil || len(b) != KEKSize || base64.StdEncoding.EncodeToString(b) != string(s) {
		return KEK{}, fmt.Errorf("seal: a key-encryption key is the standard base64 of %d random bytes (44 characters, e.g. from `openssl rand -base64 32`)", KEKSize)
	}
	return NewKEK(b)
}

// ID returns the KEK's id, "kek-" and 12 hex digits.
func (k KEK) ID() string { return k.id }

// Text returns the KEK's text form (see ParseKEK), followed by a newline.
func (k KEK) Text() []byte {
	return []byte(base64.StdEncoding.EncodeToString(k.key[:]) + "\n")
}

func (k KEK) aead() cipher.AEAD { return mustGCM(k.key[:]) }

func mustGCM(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

// Keyring seals under its primary KEK and opens under any of its KEKs. It
// is immutable and safe for concurrent use.
type Keyring struct {
	primary KEK
	byID    map[string]KEK
}

// NewKeyring returns a keyring whose primary KEK seals; primary and old
// both open. The same KEK twice is an error (a configuration mistake).
func NewKeyring(primary KEK, old ...KEK) (*Keyring, error) {
	if primary.id == "" {
		return nil, errors.New("seal: keyring needs a primary key-encryption key")
	}
	r := &Keyring{primary: primary, byID: map[string]KEK{primary.id: primary}}
	for _, k := range old {
		if k.id == "" {
			return nil, errors.New("seal: zero key-encryption key")
		}
		if _, dup := r.byID[k.id]; dup {
			return nil, fmt.Errorf("seal: key-encryption key %s is configured twice", k.id)
		}
		r.byID[k.id] = k
	}
	return r, nil
}

// PrimaryID returns the id of the KEK that seals.
func (r *Keyring) PrimaryID() string { return r.primary.id }

// KEKIDs returns the ids of every KEK that opens, primary first.
func (r *Keyring) KEKIDs() []string {
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		if id != r.primary.id {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return append([]string{r.primary.id}, ids...)
}

// Blob is a parsed sealed value.
type Blob struct {
	Version byte
	// KEKID names the KEK that wrapped the data key.
	KEKID      string
	header     []byte
	wrappedDEK []byte // nonce || ciphertext || tag
	nonce      []byte
	ciphertext []byte // ciphertext || tag
}

// IsSealed reports whether b starts like a sealed blob. It says nothing of
// whether b is well formed: use it only to tell sealed values from values
// stored before sealing (a JSON object or a note key never starts so).
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, []byte(magic)) }

// Parse parses a sealed blob without opening it:
//
//	"mseal" | version (1) | len(kek id) (1) | kek id |
//	DEK nonce (12) | wrapped DEK (32) + tag (16) |
//	data nonce (12) | data ciphertext + tag (16)
//
// The KEK id is 1 to 64 characters of [a-z0-9-]. Anything else is
// ErrMalformed.
func Parse(blob []byte) (*Blob, error) {
	if len(blob) > MaxBlobSize {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrMalformed, len(blob), MaxBlobSize)
	}
	if !IsSealed(blob) {
		return nil, fmt.Errorf("%w: no seal header", ErrMalformed)
	}
	rest := blob[len(magic):]
	if len(rest) < 2 {
		return nil, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	b := &Blob{Version: rest[0]}
	if b.Version != version1 {
		return nil, fmt.Errorf("%w: unknown version %d", ErrMalformed, b.Version)
	}
	n := int(rest[1])
	rest = rest[2:]
	if n == 0 || n > maxKEKIDLen || len(rest) < n {
		return nil, fmt.Errorf("%w: bad key-encryption key id", ErrMalformed)
	}
	id := rest[:n]
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return nil, fmt.Errorf("%w: bad key-encryption key id", ErrMalformed)
		}
	}
	b.KEKID = string(id)
	rest = rest[n:]
	b.header = blob[:len(blob)-len(rest)]
	if len(rest) < wrappedDEKSize+nonceSize+tagSize {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	b.wrappedDEK, rest = rest[:wrappedDEKSize], rest[wrappedDEKSize:]
	b.nonce, b.ciphertext = rest[:nonceSize], rest[nonceSize:]
	return b, nil
}

// aad is the additional data both encryptions authenticate: a domain
// string, the length-prefixed purpose and record id, and the blob's header
// (version and KEK id). Length prefixes keep ("a", "bc") and ("ab", "c")
// apart.
func aad(purpose, recordID string, header []byte) []byte {
	out := make([]byte, 0, 32+len(purpose)+len(recordID)+len(header))
	out = append(out, "mandate/seal/v1\x00"...)
	out = binary.AppendUvarint(out, uint64(len(purpose)))
	out = append(out, purpose...)
	out = binary.AppendUvarint(out, uint64(len(recordID)))
	out = append(out, recordID...)
	return append(out, header...)
}

func checkBinding(purpose, recordID string) error {
	if purpose == "" || len(purpose) > MaxPurposeLen {
		return fmt.Errorf("seal: purpose must be 1 to %d characters", MaxPurposeLen)
	}
	for _, c := range []byte(purpose) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("seal: purpose %q must be of [a-z0-9._-]", purpose)
		}
	}
	if recordID == "" || len(recordID) > MaxRecordIDLen {
		return fmt.Errorf("seal: record id must be 1 to %d bytes", MaxRecordIDLen)
	}
	return nil
}

// Seal encrypts plaintext under a fresh data key wrapped by the primary
// KEK, bound to purpose (e.g. "token.signing_key") and recordID (the row's
// key). Purpose is 1 to 64 characters of [a-z0-9._-]; recordID is 1 to
// 1024 bytes.
func (r *Keyring) Seal(purpose, recordID string, plaintext []byte) ([]byte, error) {
	if err := checkBinding(purpose, recordID); err != nil {
		return nil, err
	}
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("seal: value is %d bytes, over the %d-byte limit", len(plaintext), MaxPlaintextSize)
	}
	id := r.primary.id
	out := make([]byte, 0, len(magic)+2+len(id)+wrappedDEKSize+nonceSize+len(plaintext)+tagSize)
	out = append(out, magic...)
	out = append(out, version1, byte(len(id)))
	out = append(out, id...)
	ad := aad(purpose, recordID, out)

	random := make([]byte, dekSize+2*nonceSize)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("seal: random: %w", err)
	}
	dek, wrapNonce, dataNonce := random[:dekSize], random[dekSize:dekSize+nonceSize], random[dekSize+nonceSize:]
	out = append(out, wrapNonce...)
	out = r.primary.aead().Seal(out, wrapNonce, dek, ad)
	out = append(out, dataNonce...)
	out = mustGCM(dek).Seal(out, dataNonce, plaintext, ad)
	clear(random)
	return out, nil
}

// Open decrypts a blob sealed for purpose and recordID. Errors wrap
// ErrMalformed, ErrUnknownKEK (naming the KEK needed and the ones held) or
// ErrOpen; nothing is ever returned decrypted wrongly.
func (r *Keyring) Open(purpose, recordID string, blob []byte) ([]byte, error) {
	if err := checkBinding(purpose, recordID); err != nil {
		return nil, err
	}
	b, err := Parse(blob)
	if err != nil {
		return nil, err
	}
	kek, ok := r.byID[b.KEKID]
	if !ok {
		return nil, fmt.Errorf("%w: %s %q was sealed by %s; this server has %v", ErrUnknownKEK, purpose, recordID, b.KEKID, r.KEKIDs())
	}
	ad := aad(purpose, recordID, b.header)
	dek, err := kek.aead().Open(nil, b.wrappedDEK[:nonceSize], b.wrappedDEK[nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q", ErrOpen, purpose, recordID)
	}
	defer clear(dek)
	p, err := mustGCM(dek).Open(nil, b.nonce, b.ciphertext, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q", ErrOpen, purpose, recordID)
	}
	return p, nil
}

// NeedsReseal reports whether blob is wrapped by a KEK other than the
// primary (or is not a well-formed blob), so that a re-wrap pass should
// Reseal it.
func (r *Keyring) NeedsReseal(blob []byte) bool {
	b, err := Parse(blob)
	return err != nil || b.KEKID != r.primary.id
}

// Reseal opens blob and seals its value again under the primary KEK with a
// fresh data key: the re-wrap step of a KEK rotation.
func (r *Keyring) Reseal(purpose, recordID string, blob []byte) ([]byte, error) {
	p, err := r.Open(purpose, recordID, blob)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	return r.Seal(purpose, recordID, p)
}
