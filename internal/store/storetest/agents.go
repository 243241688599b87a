package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/identity"
)

func testAgents(t *testing.T, open OpenFunc) {
	t.Run("CreateGet", func(t *testing.T) {
		t.Parallel()
		full := newAgent("full")
		full.Description = "builds and tests the monorepo"
		full.Tier = identity.TierAutonomous
		full.Labels = map[string]string{"team": "platform", "env/stage": "prod"}
		full.Keys = publicKeys(t)
		full.Federations = []identity.Federation{
			{Issuer: "https://token.actions.githubusercontent.com", Subject: "repo:acme/app:ref:refs/heads/main"},
			{Issuer: "https://kubernetes.default.svc", Subject: "system:serviceaccount:ci:builder"},
		}
		full.RequireDPoP = true
		full.CreatedAt = at(-time.Hour).In(time.FixedZone("CET", 3600))
		full.UpdatedAt = at(time.Minute)

		for _, tc := range []struct {
			name  string
			agent *identity.Agent
		}{
			{"minimal", newAgent("minimal")},
			{"every field", full},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := open(t)
				if err := s.CreateAgent(t.Context(), tc.agent); err != nil {
					t.Fatalf("CreateAgent() = %v, want nil", err)
				}
				got, err := s.GetAgent(t.Context(), tc.agent.ID)
				if err != nil {
					t.Fatalf("GetAgent(%s) = %v, want nil", tc.agent.ID, err)
				}
				if diff := cmp.Diff(tc.agent, got, cmpOpts); diff != "" {
					t.Errorf("GetAgent(%s) mismatch (-want +got):\n%s", tc.agent.ID, diff)
				}
				checkUTC(t, "GetAgent", got.CreatedAt, got.UpdatedAt)
			})
		}
	})

	t.Run("Conflicts", func(t *testing.T) {
		t.Parallel()
		fed := identity.Federation{Issuer: "https://issuer.example", Subject: "ci-builder"}
		for _, tc := range []struct {
			name     string
			existing *identity.Agent
			create   *identity.Agent
			wantErr  error
			// mustNotFind are federations that must not exist after the
			// failed create (it is all or nothing).
			mustNotFind []identity.Federation
		}{
			{
				name:     "same ID",
				existing: newAgent("dup"),
				create: func() *identity.Agent {
					a := newAgent("dup")
					a.Federations = []identity.Federation{{Issuer: "https://other.example", Subject: "x"}}
					return a
				}(),
				wantErr:     identity.ErrExists,
				mustNotFind: []identity.Federation{{Issuer: "https://other.example", Subject: "x"}},
			},
			{
				name: "federation bound to another agent",
				existing: func() *identity.Agent {
					a := newAgent("first")
					a.Federations = []identity.Federation{fed}
					return a
				}(),
				create: func() *identity.Agent {
					a := newAgent("second")
					a.Federations = []identity.Federation{{Issuer: "https://fresh.example", Subject: "y"}, fed}
					return a
				}(),
				wantErr:     identity.ErrFederationTaken,
				mustNotFind: []identity.Federation{{Issuer: "https://fresh.example", Subject: "y"}},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := open(t)
				mustCreateAgents(t, s, tc.existing)
				err := s.CreateAgent(t.Context(), tc.create)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("CreateAgent(%s) = %v, want %v", tc.create.ID, err, tc.wantErr)
				}
				if tc.create.ID != tc.existing.ID {
					if _, err := s.GetAgent(t.Context(), tc.create.ID); !errors.Is(err, identity.ErrNotFound) {
						t.Errorf("GetAgent(%s) after failed create = %v, want ErrNotFound", tc.create.ID, err)
					}
				}
				got, err := s.GetAgent(t.Context(), tc.existing.ID)
				if err != nil {
					t.Fatalf("GetAgent(%s) = %v", tc.existing.ID, err)
				}
				if diff := cmp.Diff(tc.existing, got, cmpOpts); diff != "" {
					t.Errorf("existing agent changed by failed create (-want +got):\n%s", diff)
				}
				for _, f := range tc.mustNotFind {
					if a, err := s.FindFederated(t.Context(), f.Issuer, f.Subject); !errors.Is(err, identity.ErrNotFound) {
						t.Errorf("FindFederated(%s, %s) after failed create = %v, %v; want ErrNotFound", f.Issuer, f.Subject, a, err)
					}
				}
			})
		}
	})

	t.Run("FindFederated", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := newAgent("builder")
		a.Federations = []identity.Federation{
			{Issuer: "https://issuer.example", Subject: "builder"},
			{Issuer: "https://other.example", Subject: "builder-2"},
		}
		b := newAgent("deployer")
		b.Federations = []identity.Federation{
			{Issuer: "https://issuer.example", Subject: "deployer"},
			// Same subject at another issuer is a different identity.
			{Issuer: "https://third.example", Subject: "builder"},
		}
		mustCreateAgents(t, s, a, b, newAgent("keyonly"))
		for _, tc := range []struct {
			name            string
			issuer, subject string
			want            *identity.Agent
		}{
			{"first federation", "https://issuer.example", "builder", a},
			{"second federation", "https://other.example", "builder-2", a},
			{"same issuer, other subject", "https://issuer.example", "deployer", b},
			{"same subject, other issuer", "https://third.example", "builder", b},
			{"unknown subject", "https://issuer.example", "nobody", nil},
			{"unknown issuer", "https://unknown.example", "builder", nil},
			{"subject is case-sensitive", "https://issuer.example", "Builder", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got, err := s.FindFederated(t.Context(), tc.issuer, tc.subject)
				if tc.want == nil {
					if !errors.Is(err, identity.ErrNotFound) {
						t.Errorf("FindFederated(%s, %s) = %v, %v; want ErrNotFound", tc.issuer, tc.subject, got, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("FindFederated(%s, %s) = %v, want nil", tc.issuer, tc.subject, err)
				}
				if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
					t.Errorf("FindFederated(%s, %s) mismatch (-want +got):\n%s", tc.issuer, tc.subject, diff)
				}
			})
		}
	})

	t.Run("GetNotFound", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, newAgent("present"))
		if a, err := s.GetAgent(t.Context(), agentID("absent")); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("GetAgent(absent) = %v, %v; want ErrNotFound", a, err)
		}
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mk := func(name string, tier identity.Tier, status identity.Status, owner string) *identity.Agent {
			a := newAgent(name)
			a.Tier, a.Status, a.Owner = tier, status, owner
			a.Federations = []identity.Federation{{Issuer: "https://issuer.example", Subject: name}}
			return a
		}
		// Created out of ID order: ListAgents orders by ID.
		c := mk("c-deployer", identity.TierAutonomous, identity.StatusActive, "bob@example.org")
		a := mk("a-reader", identity.TierAssist, identity.StatusActive, "alice@example.org")
		d := mk("d-old", identity.TierSupervised, identity.StatusRetired, "alice@example.org")
		b := mk("b-writer", identity.TierSupervised, identity.StatusSuspended, "alice@example.org")
		mustCreateAgents(t, s, c, a, d, b)
		for _, tc := range []struct {
			name   string
			filter identity.Filter
			want   []*identity.Agent
		}{
			{"all", identity.Filter{}, []*identity.Agent{a, b, c, d}},
			{"active", identity.Filter{Status: identity.StatusActive}, []*identity.Agent{a, c}},
			{"suspended", identity.Filter{Status: identity.StatusSuspended}, []*identity.Agent{b}},
			{"supervised", identity.Filter{Tier: identity.TierSupervised}, []*identity.Agent{b, d}},
			{"owner", identity.Filter{Owner: "alice@example.org"}, []*identity.Agent{a, b, d}},
			{"owner and status", identity.Filter{Owner: "alice@example.org", Status: identity.StatusRetired}, []*identity.Agent{d}},
			{"limit", identity.Filter{Limit: 2}, []*identity.Agent{a, b}},
			{"filter and limit", identity.Filter{Owner: "alice@example.org", Limit: 2}, []*identity.Agent{a, b}},
			{"no match", identity.Filter{Owner: "mallory@example.org"}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got, err := s.ListAgents(t.Context(), tc.filter)
				if err != nil {
					t.Fatalf("ListAgents(%+v) = %v", tc.filter, err)
				}
				if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
					t.Errorf("ListAgents(%+v) mismatch (-want +got):\n%s", tc.filter, diff)
				}
			})
		}
	})

	t.Run("SetStatus", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := newAgent("runner")
		a.Keys = publicKeys(t)
		a.Federations = []identity.Federation{{Issuer: "https://issuer.example", Subject: "runner"}}
		mustCreateAgents(t, s, a)
		steps := []struct {
			name   string
			status identity.Status
			at     time.Time
		}{
			{"suspend", identity.StatusSuspended, at(time.Minute)},
			{"resume", identity.StatusActive, at(2 * time.Minute)},
			{"retire", identity.StatusRetired, at(3 * time.Minute)},
		}
		want := *a
		for _, st := range steps {
			got, err := s.SetAgentStatus(t.Context(), a.ID, st.status, st.at)
			if err != nil {
				t.Fatalf("%s: SetAgentStatus(%s) = %v", st.name, st.status, err)
			}
			want.Status, want.UpdatedAt = st.status, st.at
			if diff := cmp.Diff(&want, got, cmpOpts); diff != "" {
				t.Errorf("%s: SetAgentStatus(%s) returned (-want +got):\n%s", st.name, st.status, diff)
			}
			stored, err := s.GetAgent(t.Context(), a.ID)
			if err != nil {
				t.Fatalf("%s: GetAgent = %v", st.name, err)
			}
			if diff := cmp.Diff(&want, stored, cmpOpts); diff != "" {
				t.Errorf("%s: GetAgent after SetAgentStatus (-want +got):\n%s", st.name, diff)
			}
		}
		if got, err := s.SetAgentStatus(t.Context(), agentID("absent"), identity.StatusSuspended, t0); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("SetAgentStatus(absent) = %v, %v; want ErrNotFound", got, err)
		}
	})

	t.Run("UpdateKeys", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := newAgent("rotator")
		keys := publicKeys(t)
		a.Keys = keys[:1]
		a.Federations = []identity.Federation{{Issuer: "https://issuer.example", Subject: "rotator"}}
		mustCreateAgents(t, s, a)

		got, err := s.UpdateAgentKeys(t.Context(), a.ID, at(time.Minute), func(cur []jose.JSONWebKey) ([]jose.JSONWebKey, error) {
			if len(cur) != 1 || cur[0].KeyID != keys[0].KeyID {
				t.Errorf("update saw keys %v, want the stored one", cur)
			}
			return append(cur, keys[1]), nil
		})
		if err != nil {
			t.Fatalf("UpdateAgentKeys(add) = %v", err)
		}
		want := *a
		want.Keys, want.UpdatedAt = keys, at(time.Minute)
		if diff := cmp.Diff(&want, got, cmpOpts); diff != "" {
			t.Errorf("UpdateAgentKeys(add) returned (-want +got):\n%s", diff)
		}
		if stored, _ := s.GetAgent(t.Context(), a.ID); !cmp.Equal(&want, stored, cmpOpts) {
			t.Errorf("GetAgent after UpdateAgentKeys = %+v", stored)
		}

		refused := errors.New("refused by the caller")
		if _, err := s.UpdateAgentKeys(t.Context(), a.ID, at(2*time.Minute), func([]jose.JSONWebKey) ([]jose.JSONWebKey, error) {
			return nil, refused
		}); !errors.Is(err, refused) {
			t.Errorf("UpdateAgentKeys(refusing update) = %v, want the update's error", err)
		}
		if stored, _ := s.GetAgent(t.Context(), a.ID); !cmp.Equal(&want, stored, cmpOpts) {
			t.Errorf("a refused update changed the agent: %+v", stored)
		}

		got, err = s.UpdateAgentKeys(t.Context(), a.ID, at(3*time.Minute), func([]jose.JSONWebKey) ([]jose.JSONWebKey, error) { return nil, nil })
		if err != nil || len(got.Keys) != 0 || len(got.Federations) != 1 {
			t.Errorf("UpdateAgentKeys(remove all) = %+v, %v; want no keys, federation kept", got, err)
		}
		if _, err := s.UpdateAgentKeys(t.Context(), agentID("absent"), t0, func(k []jose.JSONWebKey) ([]jose.JSONWebKey, error) { return k, nil }); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("UpdateAgentKeys(absent) = %v, want ErrNotFound", err)
		}
	})
}
