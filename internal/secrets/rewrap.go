package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal"
)

// RewrapReport is what a Rewrap pass did.
type RewrapReport struct {
	// Secrets and Leases count the values sealed again under the primary
	// key-encryption key.
	Secrets int `json:"secrets"`
	Leases  int `json:"leases"`
	// Unusable names the secrets whose value does not open (altered or
	// corrupted): they cannot be leased until put again.
	Unusable []Name `json:"unusable"`
	// PrimaryKEK is the id of the key-encryption key everything is now
	// sealed under.
	PrimaryKEK string `json:"primary_kek"`
}

// Rewrap seals every secret value, and every credential of a lease that
// has not ended, that is sealed under a key-encryption key other than the
// primary one again under the primary: the re-wrap step of a KEK rotation
// (docs/secrets.md). It runs at every start and on `mandate secret
// rewrap`, concurrently with leasing (each value is replaced only if it is
// still the one opened). A value sealed under a KEK the keyring does not
// hold stops it with an error wrapping seal.ErrUnknownKEK: the server must
// not run with a key that opens nothing. A value that does not open under
// a KEK it holds is reported Unusable; the rest are resealed.
func (b *Broker) Rewrap(ctx context.Context, actor string) (RewrapReport, error) {
	rep := RewrapReport{PrimaryKEK: b.cfg.Sealer.PrimaryID(), Unusable: []Name{}}
	list, err := b.cfg.Store.ListSecrets(ctx)
	if err != nil {
		return rep, err
	}
	for _, s := range list {
		s, sealed, err := b.cfg.Store.GetSecret(ctx, s.Name)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return rep, err
		}
		switch done, err := b.reseal(SealPurposeValue, s.ID, sealed, func(n []byte) error {
			return b.cfg.Store.ReplaceSecretValue(ctx, s.Name, sealed, n)
		}); {
		case errors.Is(err, seal.ErrUnknownKEK):
			return rep, fmt.Errorf("secrets: %w", err)
		case errors.Is(err, seal.ErrOpen) || errors.Is(err, seal.ErrMalformed):
			b.log.ErrorContext(ctx, "secret value does not open: the secret is unusable until it is put again", "secret", s.Name)
			rep.Unusable = append(rep.Unusable, s.Name)
		case err != nil:
			return rep, err
		case done:
			rep.Secrets++
		}
	}
	leases, err := b.cfg.Store.ListLeases(ctx, LeaseFilter{Statuses: []LeaseStatus{LeaseActive, LeaseFailed}})
	if err != nil {
		return rep, err
	}
	for _, l := range leases {
		sealed, err := b.cfg.Store.LeaseValue(ctx, l.ID)
		if err != nil || sealed == nil {
			continue
		}
		switch done, err := b.reseal(SealPurposeLease, string(l.ID), sealed, func(n []byte) error {
			return b.cfg.Store.ReplaceLeaseValue(ctx, l.ID, sealed, n)
		}); {
		case errors.Is(err, seal.ErrUnknownKEK):
			return rep, fmt.Errorf("secrets: %w", err)
		case err != nil:
			b.log.ErrorContext(ctx, "lease credential does not reseal", "lease", l.ID, "err", err)
		case done:
			rep.Leases++
		}
	}
	if rep.Secrets+rep.Leases > 0 {
		b.recordLater(ctx, audit.Event{Type: TypeSecretsRewrapped, Actor: actor, Point: Point, Details: map[string]string{
			"secrets": strconv.Itoa(rep.Secrets), "leases": strconv.Itoa(rep.Leases), "primary_kek": rep.PrimaryKEK}})
	}
	return rep, nil
}

// reseal opens blob and, if it is sealed under another KEK than the
// primary, replaces it with a new sealing. A concurrent change (the value
// was rotated meanwhile, under the primary) is not an error.
func (b *Broker) reseal(purpose, id string, blob []byte, replace func([]byte) error) (bool, error) {
	if _, err := b.cfg.Sealer.Open(purpose, id, blob); err != nil {
		return false, err
	}
	if !b.cfg.Sealer.NeedsReseal(blob) {
		return false, nil
	}
	n, err := b.cfg.Sealer.Reseal(purpose, id, blob)
	if err != nil {
		return false, err
	}
	if err := replace(n); err != nil {
		if errors.Is(err, ErrChanged) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeaseNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
