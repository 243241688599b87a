package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// StoredSource is a policy document managed through the admin API: named
// Cedar text kept in the store, so that every replica on the same store
// decides with it.
type StoredSource struct {
	// Name is the document's name (see ValidName); its Source name in a
	// compiled set is SourceName(Name).
	Name string
	// Text is the Cedar source, at most MaxSourceSize bytes.
	Text []byte
	// Version identifies this revision for optimistic concurrency (the
	// admin API's ETag). The store assigns it on every put: versions are
	// positive and never reused, not even after a delete and a new put
	// of the same name, so a stale version can never match a later
	// document.
	Version int64
	// UpdatedAt and UpdatedBy say when and by whom (an admin actor) the
	// revision was written.
	UpdatedAt time.Time
	UpdatedBy string
}

// Digest is "sha256:<hex>" of the source text, as policy change events
// record it.
func (s *StoredSource) Digest() string { return SourceDigest(s.Text) }

// SourceDigest is "sha256:<hex>" of a policy source's text.
func SourceDigest(text []byte) string {
	sum := sha256.Sum256(text)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SourceStore keeps the API-managed policy documents. Implementations are
// safe for concurrent use, also by several processes on one database: the
// version check and the write are one atomic step.
type SourceStore interface {
	// ListPolicySources returns every stored document, by name.
	ListPolicySources(ctx context.Context) ([]*StoredSource, error)
	// GetPolicySource returns the document name, or ErrPolicyNotFound.
	GetPolicySource(ctx context.Context, name string) (*StoredSource, error)
	// PutPolicySource creates or replaces the document src.Name with
	// src.Text, src.UpdatedAt and src.UpdatedBy (src.Version is ignored)
	// if the stored revision is ifVersion (0: none may exist). Otherwise
	// it returns ErrVersionConflict and changes nothing. It returns the stored revision with its new
	// Version.
	PutPolicySource(ctx context.Context, src *StoredSource, ifVersion int64) (*StoredSource, error)
	// DeletePolicySource removes the document name if its revision is
	// ifVersion. It returns ErrPolicyNotFound if
	// there is none, ErrVersionConflict if it has another version.
	DeletePolicySource(ctx context.Context, name string, ifVersion int64) error
	// PolicySourcesVersion is a number that changes whenever any
	// document is put or deleted, by any process on the store: what a
	// Loader polls. It is cheap (one row).
	PolicySourcesVersion(ctx context.Context) (int64, error)
}

var (
	// ErrPolicyNotFound: no API-managed policy of that name.
	ErrPolicyNotFound = errors.New("policy not found")
	// ErrVersionConflict: the stored policy document is not the expected
	// revision (someone else changed it); nothing was changed.
	ErrVersionConflict = errors.New("policy version conflict")
)

var policyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidName reports whether name can name an API-managed policy: 1-64 of
// a-z, 0-9, "_" and "-", starting with a letter or digit.
func ValidName(name string) error {
	if !policyNameRE.MatchString(name) {
		return fmt.Errorf("%w: policy name %q must be 1-64 characters of a-z, 0-9, _ and -", ErrInvalidPolicy, name)
	}
	return nil
}

// CheckStoredSource reports whether src may be stored: a valid name, text
// within MaxSourceSize and an author. Stores call it before writing; it
// does not compile the text (the admin API does that against the whole
// set before it stores).
func CheckStoredSource(src *StoredSource) error {
	if err := ValidName(src.Name); err != nil {
		return err
	}
	if len(src.Text) > MaxSourceSize {
		return fmt.Errorf("%w: policy %s is larger than %d bytes", ErrInvalidPolicy, src.Name, MaxSourceSize)
	}
	if src.UpdatedBy == "" || src.UpdatedAt.IsZero() {
		return fmt.Errorf("%w: policy %s needs updated_at and updated_by", ErrInvalidPolicy, src.Name)
	}
	return nil
}

// SourceName is the source name of an API-managed policy.
func SourceName(name string) string { return "api:" + name }
