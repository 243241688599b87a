package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/token"
)

func testPeople(t *testing.T, open OpenFunc) {
	t.Run("Humans", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		if _, err := s.GetHuman(ctx, "https://idp", "alice"); !errors.Is(err, identity.ErrHumanNotFound) {
			t.Fatalf("GetHuman(unknown) = %v, want ErrHumanNotFound", err)
		}
		h := &identity.Human{Issuer: "https://idp", Subject: "alice", Principal: "alice@example.com", Email: "alice@example.com",
			Groups: []string{"dev", "ops"}, CreatedAt: t0, LastSeen: t0}
		if err := s.UpsertHuman(ctx, h); err != nil {
			t.Fatal(err)
		}
		again := *h
		again.Groups, again.LastSeen, again.CreatedAt, again.Admin = []string{"dev"}, at(time.Hour), at(time.Hour), true
		if err := s.UpsertHuman(ctx, &again); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetHuman(ctx, "https://idp", "alice")
		if err != nil {
			t.Fatal(err)
		}
		want := again
		want.CreatedAt = t0 // kept from the first sign-in
		if d := cmp.Diff(&want, got); d != "" {
			t.Errorf("GetHuman after upsert (-want +got):\n%s", d)
		}
		if err := s.UpsertHuman(ctx, &identity.Human{Issuer: "https://idp", Subject: "x", CreatedAt: t0, LastSeen: t0}); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("UpsertHuman(no principal) = %v, want ErrInvalid", err)
		}
	})
	t.Run("Sessions", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		mk := func(id string, created time.Time) *identity.Session {
			return &identity.Session{ID: id, Human: "https://idp alice", CSRF: "c-" + id, CreatedAt: created, LastSeen: created, ExpiresAt: created.Add(time.Hour)}
		}
		for _, ss := range []*identity.Session{mk("s1", t0), mk("s2", at(time.Minute))} {
			if err := s.CreateSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.GetSession(ctx, "s1", at(time.Second))
		if err != nil || got.CSRF != "c-s1" || got.Human != "https://idp alice" {
			t.Fatalf("GetSession(s1) = %+v, %v", got, err)
		}
		if _, err := s.GetSession(ctx, "s1", at(time.Hour)); !errors.Is(err, identity.ErrSessionNotFound) {
			t.Errorf("GetSession(expired) = %v, want ErrSessionNotFound", err)
		}
		list, err := s.ListSessions(ctx, "https://idp alice", at(2*time.Minute))
		if err != nil || len(list) != 2 || list[0].ID != "s2" {
			t.Fatalf("ListSessions = %v, %v; want s2, s1", list, err)
		}
		if err := s.RevokeSession(ctx, "s1", "https://idp mallory", at(time.Minute)); !errors.Is(err, identity.ErrSessionNotFound) {
			t.Errorf("RevokeSession(another's) = %v, want ErrSessionNotFound", err)
		}
		if err := s.RevokeSession(ctx, "s1", "https://idp alice", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetSession(ctx, "s1", at(time.Minute)); !errors.Is(err, identity.ErrSessionNotFound) {
			t.Errorf("GetSession(revoked) = %v, want ErrSessionNotFound", err)
		}
		if err := s.RevokeSession(ctx, "s1", "", at(time.Minute)); !errors.Is(err, identity.ErrSessionNotFound) {
			t.Errorf("RevokeSession(twice) = %v, want ErrSessionNotFound", err)
		}
	})
}

func testGrants(t *testing.T, open OpenFunc) {
	t.Run("SpendOnce", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		g := &token.Grant{Kind: token.GrantKindCode, Hash: "h1", Family: "h1", Task: "tsk_x", Agent: identity.MustParseID("spiffe://example.org/agent/a"),
			ClientID: "https://client.example/md.json", RedirectURI: "http://127.0.0.1/cb", Challenge: "ch", Resource: "https://gw/mcp/fs",
			Scope: "tool.call:fs/*", CreatedAt: t0, ExpiresAt: at(time.Minute)}
		if err := s.AddGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SpendGrant(ctx, token.GrantKindRefresh, "h1", at(time.Second)); !errors.Is(err, token.ErrGrantNotFound) {
			t.Errorf("SpendGrant(wrong kind) = %v, want ErrGrantNotFound", err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, spent := 0, 0
		for range 8 {
			wg.Go(func() {
				got, err := s.SpendGrant(ctx, token.GrantKindCode, "h1", at(time.Second))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					want := *g
					want.UsedAt = at(time.Second)
					if d := cmp.Diff(&want, got, cmpOpts); d != "" {
						t.Errorf("SpendGrant (-want +got):\n%s", d)
					}
				case errors.Is(err, token.ErrGrantSpent) && got != nil && got.Task == g.Task:
					spent++
				default:
					t.Errorf("SpendGrant = %v, %v", got, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || spent != 7 {
			t.Errorf("concurrent spends: %d won, %d saw it spent; want 1 and 7", wins, spent)
		}
		if _, err := s.SpendGrant(ctx, token.GrantKindCode, "h1", at(time.Minute)); !errors.Is(err, token.ErrGrantNotFound) {
			t.Errorf("SpendGrant(expired) = %v, want ErrGrantNotFound", err)
		}
		if err := s.PruneGrants(ctx, at(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.AddGrant(ctx, g); err != nil {
			t.Errorf("AddGrant after prune = %v", err)
		}
	})
	t.Run("Clients", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		c := &token.RegisteredClient{ClientID: "mdc_1", Metadata: []byte(`{"redirect_uris":["http://127.0.0.1/cb"]}`), CreatedAt: t0}
		if err := s.AddClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.AddClient(ctx, c); !errors.Is(err, token.ErrClientExists) {
			t.Errorf("AddClient(twice) = %v, want ErrClientExists", err)
		}
		got, err := s.GetClient(ctx, "mdc_1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c, got); d != "" {
			t.Errorf("GetClient (-want +got):\n%s", d)
		}
		if _, err := s.GetClient(ctx, "nope"); !errors.Is(err, token.ErrClientNotFound) {
			t.Errorf("GetClient(unknown) = %v, want ErrClientNotFound", err)
		}
	})
}
