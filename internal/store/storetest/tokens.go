package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/token"
)

func testSigningKeys(t *testing.T, open OpenFunc) {
	t.Run("Lifecycle", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		// Added out of creation order: SigningKeys lists oldest first.
		k2 := token.SigningKey{KID: "k2", Algorithm: "EdDSA", SealedKey: []byte("sealed-k2"), PublicJWK: []byte(`{"kty":"OKP","kid":"k2"}`), CreatedAt: at(time.Hour)}
		k1 := token.SigningKey{KID: "k1", Algorithm: "EdDSA", SealedKey: []byte("sealed-k1"), PublicJWK: []byte(`{"kty":"OKP","kid":"k1"}`), CreatedAt: t0}
		k3 := token.SigningKey{KID: "k3", Algorithm: "ES256", SealedKey: []byte{0, 1, 2, 0xff}, CreatedAt: at(2 * time.Hour)}
		for _, k := range []token.SigningKey{k2, k1, k3} {
			if err := s.AddSigningKey(t.Context(), k); err != nil {
				t.Fatalf("AddSigningKey(%s) = %v", k.KID, err)
			}
		}
		if err := s.AddSigningKey(t.Context(), token.SigningKey{KID: "k1", Algorithm: "EdDSA", SealedKey: []byte("{}"), CreatedAt: at(3 * time.Hour)}); !errors.Is(err, token.ErrKeyExists) {
			t.Errorf("AddSigningKey(k1 again) = %v, want ErrKeyExists", err)
		}
		list := func(now time.Time) []token.SigningKey {
			t.Helper()
			keys, err := s.SigningKeys(t.Context(), now)
			if err != nil {
				t.Fatalf("SigningKeys(%v) = %v", now, err)
			}
			for _, k := range keys {
				checkUTC(t, "SigningKeys "+k.KID, k.CreatedAt, k.RetiredAt, k.PublishUntil)
			}
			return keys
		}
		if diff := cmp.Diff([]token.SigningKey{k1, k2, k3}, list(at(3*time.Hour)), cmpOpts); diff != "" {
			t.Errorf("SigningKeys() mismatch (-want +got):\n%s", diff)
		}

		// Retire k1 (published until t0+1h10m) and k2 (until t0+2h10m).
		k1.RetiredAt, k1.PublishUntil = at(time.Hour), at(time.Hour+10*time.Minute)
		k2.RetiredAt, k2.PublishUntil = at(2*time.Hour), at(2*time.Hour+10*time.Minute)
		for _, k := range []token.SigningKey{k1, k2} {
			if err := s.RetireSigningKey(t.Context(), k.KID, k.RetiredAt, k.PublishUntil); err != nil {
				t.Fatalf("RetireSigningKey(%s) = %v", k.KID, err)
			}
		}
		if err := s.RetireSigningKey(t.Context(), "nope", t0, t0); err == nil {
			t.Errorf("RetireSigningKey(unknown kid) = nil, want an error")
		}
		for _, tc := range []struct {
			name string
			now  time.Time
			want []token.SigningKey
		}{
			{"all published", at(time.Hour), []token.SigningKey{k1, k2, k3}},
			{"k1 publish_until reached", at(time.Hour + 10*time.Minute), []token.SigningKey{k2, k3}},
			{"only the current key", at(5 * time.Hour), []token.SigningKey{k3}},
		} {
			if diff := cmp.Diff(tc.want, list(tc.now), cmpOpts); diff != "" {
				t.Errorf("%s: SigningKeys(%v) mismatch (-want +got):\n%s", tc.name, tc.now, diff)
			}
		}

		// Deleting at t0+2h drops k1 only; k2 is still published.
		if err := s.DeleteSigningKeys(t.Context(), at(2*time.Hour)); err != nil {
			t.Fatalf("DeleteSigningKeys() = %v", err)
		}
		if diff := cmp.Diff([]token.SigningKey{k2, k3}, list(t0), cmpOpts); diff != "" {
			t.Errorf("SigningKeys(t0) after DeleteSigningKeys mismatch (-want +got):\n%s", diff)
		}
		// A deleted kid can be added again; the current key is never deleted.
		if err := s.DeleteSigningKeys(t.Context(), at(100*time.Hour)); err != nil {
			t.Fatalf("DeleteSigningKeys() = %v", err)
		}
		if diff := cmp.Diff([]token.SigningKey{k3}, list(t0), cmpOpts); diff != "" {
			t.Errorf("SigningKeys(t0) after deleting all retired keys mismatch (-want +got):\n%s", diff)
		}
		if err := s.AddSigningKey(t.Context(), k1); err != nil {
			t.Errorf("AddSigningKey(deleted kid) = %v, want nil", err)
		}
	})

	t.Run("Reseal", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		// A key as stored before sealing: no public JWK.
		k := token.SigningKey{KID: "k1", Algorithm: "EdDSA", SealedKey: []byte(`{"kty":"OKP","d":"clear"}`), CreatedAt: t0}
		other := token.SigningKey{KID: "k2", Algorithm: "EdDSA", SealedKey: []byte("sealed-k2"), PublicJWK: []byte("pub-k2"), CreatedAt: at(time.Hour)}
		for _, k := range []token.SigningKey{k, other} {
			if err := s.AddSigningKey(t.Context(), k); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name     string
			kid      string
			old      []byte
			wantErr  error
			wantKeys []token.SigningKey
		}{
			{"stale old value", "k1", []byte("something else"), token.ErrKeyChanged, nil},
			{"unknown kid", "nope", k.SealedKey, token.ErrKeyChanged, nil},
			{"another row's value", "k1", other.SealedKey, token.ErrKeyChanged, nil},
			{"current value", "k1", k.SealedKey, nil, nil},
			{"again with the replaced value", "k1", k.SealedKey, token.ErrKeyChanged, nil},
		} {
			err := s.ResealSigningKey(t.Context(), tc.kid, tc.old, []byte("sealed-k1"), []byte("pub-k1"))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("%s: ResealSigningKey(%s) = %v, want %v", tc.name, tc.kid, err, tc.wantErr)
			}
		}
		k.SealedKey, k.PublicJWK = []byte("sealed-k1"), []byte("pub-k1")
		got, err := s.SigningKeys(t.Context(), t0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]token.SigningKey{k, other}, got, cmpOpts); diff != "" {
			t.Errorf("SigningKeys() after ResealSigningKey mismatch (-want +got):\n%s", diff)
		}
	})
}

func testUseOnce(t *testing.T, open OpenFunc) {
	t.Run("Replay", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		future := time.Now().Add(time.Hour)
		past := time.Now().Add(-time.Hour)
		for _, step := range []struct {
			name          string
			namespace, id string
			expiresAt     time.Time
			wantErr       error
		}{
			{"first use", "assertion", "jti-1", future, nil},
			{"replay", "assertion", "jti-1", future, token.ErrReplay},
			{"replay with a later expiry", "assertion", "jti-1", future.Add(time.Hour), token.ErrReplay},
			{"same id, other namespace", "dpop", "jti-1", future, nil},
			{"other id", "assertion", "jti-2", future, nil},
			{"already expired when recorded", "assertion", "jti-3", past, nil},
			{"reuse after expiry", "assertion", "jti-3", future, nil},
			{"replay of the reused id", "assertion", "jti-3", future, token.ErrReplay},
		} {
			err := s.UseOnce(t.Context(), step.namespace, step.id, step.expiresAt)
			if !errors.Is(err, step.wantErr) || (step.wantErr == nil) != (err == nil) {
				t.Errorf("%s: UseOnce(%s, %s) = %v, want %v", step.name, step.namespace, step.id, err, step.wantErr)
			}
		}
	})

	t.Run("Prune", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		now := time.Now()
		short, long := now.Add(time.Minute), now.Add(time.Hour)
		if err := s.UseOnce(t.Context(), "ns", "short", short); err != nil {
			t.Fatal(err)
		}
		if err := s.UseOnce(t.Context(), "ns", "long", long); err != nil {
			t.Fatal(err)
		}
		if err := s.PruneUsed(t.Context(), short); err != nil {
			t.Fatalf("PruneUsed() = %v", err)
		}
		if err := s.UseOnce(t.Context(), "ns", "short", long); err != nil {
			t.Errorf("UseOnce(pruned id) = %v, want nil", err)
		}
		if err := s.UseOnce(t.Context(), "ns", "long", long); !errors.Is(err, token.ErrReplay) {
			t.Errorf("UseOnce(unpruned id) = %v, want ErrReplay", err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const goroutines, ids = 16, 8
		expires := time.Now().Add(time.Hour)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners = make(map[string]int)
			errs    []error
		)
		for g := range goroutines {
			wg.Go(func() {
				for i := range ids {
					id := fmt.Sprintf("jti-%d", (i+g)%ids)
					err := s.UseOnce(t.Context(), "concurrent", id, expires)
					mu.Lock()
					switch {
					case err == nil:
						winners[id]++
					case !errors.Is(err, token.ErrReplay):
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			t.Errorf("UseOnce() = %v, want nil or ErrReplay", err)
		}
		for i := range ids {
			id := fmt.Sprintf("jti-%d", i)
			if winners[id] != 1 {
				t.Errorf("UseOnce(%s) succeeded %d times across %d goroutines, want exactly once", id, winners[id], goroutines)
			}
		}
	})
}

func testRevokedTokens(t *testing.T, open OpenFunc) {
	s := open(t)
	for _, r := range []struct {
		jti     string
		expires time.Time
	}{
		{"tok-b", at(time.Hour)},
		{"tok-a", at(10 * time.Minute)},
		{"tok-a", at(10 * time.Minute)}, // idempotent
		{"tok-c", at(5 * time.Minute)},
	} {
		if err := s.RevokeToken(t.Context(), r.jti, r.expires); err != nil {
			t.Fatalf("RevokeToken(%s) = %v, want nil", r.jti, err)
		}
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		want []string
	}{
		{"all live", t0, []string{"tok-a", "tok-b", "tok-c"}},
		{"at tok-c's expiry", at(5 * time.Minute), []string{"tok-a", "tok-b"}},
		{"after tok-a's expiry", at(11 * time.Minute), []string{"tok-b"}},
		{"after all expired", at(2 * time.Hour), nil},
	} {
		got, err := s.RevokedTokens(t.Context(), tc.now)
		if err != nil {
			t.Fatalf("RevokedTokens(%v) = %v", tc.now, err)
		}
		if diff := cmp.Diff(tc.want, got, sortStrings); diff != "" {
			t.Errorf("%s: RevokedTokens(%v) mismatch (-want +got):\n%s", tc.name, tc.now, diff)
		}
	}
}

// sortStrings compares string lists as sets, nil like empty. Use it on its
// own: it conflicts with cmpopts.EquateEmpty.
var sortStrings = cmp.Transformer("sortStrings", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s
})
