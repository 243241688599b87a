package token

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// BenchmarkIssue measures signing one task token (claims built per token).
func BenchmarkIssue(b *testing.B) {
	f := newVFix(b)
	base := f.taskClaims()
	b.ReportAllocs()
	for b.Loop() {
		c := *base
		now := f.clock.Now()
		c.ID = newJTI()
		c.IssuedAt = jwt.NewNumericDate(now)
		c.Expiry = jwt.NewNumericDate(now.Add(5 * time.Minute))
		if _, err := f.kr.Sign(&c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached measures the hot path: a token already verified.
func BenchmarkVerifyCached(b *testing.B) {
	f := newVFix(b)
	raw := f.sign(b, f.taskClaims())
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw, Use: UseTask}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncached measures a full verification (signature and
// claims) of a token not yet cached.
func BenchmarkVerifyUncached(b *testing.B) {
	f := newVFix(b)
	f.v.cfg.CacheSize = -1
	raw := f.sign(b, f.taskClaims())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw, Use: UseTask}); err != nil {
			b.Fatal(err)
		}
	}
}
