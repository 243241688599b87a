package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// HMACPrefix starts every keyed value the ledger writes in place of
// arguments or secrets.
const HMACPrefix = "hmac-sha256:"

// Redactor turns action arguments into what the ledger keeps: a keyed
// digest by default, or the arguments with secrets replaced by keyed
// hashes. The key is per installation (generated once and stored, as
// Vault's audit devices do), so equal values correlate within one
// installation but cannot be recovered or brute-forced from an export
// without it. A Redactor is safe for concurrent use.
type Redactor struct {
	key    []byte
	fields map[string]bool
}

// NewRedactor returns a Redactor keyed with key that also replaces the
// values of the named object fields (matched case-insensitively, at any
// depth).
func NewRedactor(key []byte, fields []string) *Redactor {
	r := &Redactor{key: append([]byte(nil), key...), fields: make(map[string]bool, len(fields))}
	for _, f := range fields {
		r.fields[strings.ToLower(strings.TrimSpace(f))] = true
	}
	return r
}

// HMAC returns the keyed hash of b as "hmac-sha256:<hex>".
func (r *Redactor) HMAC(b []byte) string {
	m := hmac.New(sha256.New, r.key)
	m.Write(b)
	return HMACPrefix + hex.EncodeToString(m.Sum(nil))
}

// Digest returns the keyed digest of the canonical form of the JSON value
// args, for Event.ArgsDigest.
func (r *Redactor) Digest(args []byte) (string, error) {
	c, err := CanonicalJSON(args)
	if err != nil {
		return "", fmt.Errorf("%w: args: %v", ErrInvalid, err)
	}
	return r.HMAC(c), nil
}

// Redact returns the canonical form of the JSON value args with the value
// of every configured or secret-looking field, and every secret-looking
// string, replaced by its keyed hash.
func (r *Redactor) Redact(args []byte) ([]byte, error) {
	v, err := decodeValue(args)
	if err != nil {
		return nil, fmt.Errorf("%w: args: %v", ErrInvalid, err)
	}
	v, err = r.redact(v)
	if err != nil {
		return nil, err
	}
	return marshalValue(v)
}

// Arguments fills ev.ArgsDigest from args and, when full is set (a policy
// obligation asked for full arguments), ev.Args with the redacted
// arguments.
func (r *Redactor) Arguments(ev *Event, args []byte, full bool) error {
	d, err := r.Digest(args)
	if err != nil {
		return err
	}
	ev.ArgsDigest = d
	if full {
		if ev.Args, err = r.Redact(args); err != nil {
			return err
		}
	}
	return nil
}

func (r *Redactor) redact(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if r.fields[strings.ToLower(k)] || secretKey.MatchString(k) {
				b, err := marshalValue(val)
				if err != nil {
					return nil, err
				}
				v[k] = r.HMAC(b)
				continue
			}
			red, err := r.redact(val)
			if err != nil {
				return nil, err
			}
			v[k] = red
		}
		return v, nil
	case []any:
		for i, val := range v {
			red, err := r.redact(val)
			if err != nil {
				return nil, err
			}
			v[i] = red
		}
		return v, nil
	case string:
		if LooksSecret(v) {
			return r.HMAC([]byte(v)), nil
		}
	}
	return v, nil
}

// secretKey matches object keys whose values are secrets.
var secretKey = regexp.MustCompile(`(?i)(passw(or)?d|secret|token|api[_-]?key|authorization|credential|private[_-]?key|cookie|session[_-]?id|access[_-]?key)`)

// secretValues match values that are credentials whatever their key.
var secretValues = []*regexp.Regexp{
	regexp.MustCompile(`^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.`),                 // JWT / JWS
	regexp.MustCompile(`(?i)^(bearer|basic|dpop)\s+\S`),                        // HTTP credentials
	regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`),                          // AWS access key IDs
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),                   // PEM private keys
	regexp.MustCompile(`\b(ghp|gho|ghs|ghu|ghr|github_pat)_[A-Za-z0-9_]{20,}`), // GitHub tokens
	regexp.MustCompile(`\bsk-[A-Za-z0-9_-]{20,}`),                              // OpenAI/Anthropic-style keys
	regexp.MustCompile(`\bxox[abprs]-[A-Za-z0-9-]{10,}`),                       // Slack tokens
	regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}`),                           // GitLab tokens
	regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s@]+@`),        // URL with a password
}

// LooksSecret reports whether s looks like a credential.
func LooksSecret(s string) bool {
	for _, re := range secretValues {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
