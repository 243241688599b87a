package storetest

import (
	"errors"
	"testing"
	"time"

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

	t.Run("UpdateCredentials", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a, other := newAgent("rotator"), newAgent("other")
		keys := publicKeys(t)
		a.Keys = keys[:1]
		a.Federations = []identity.Federation{{Issuer: "https://issuer.example", Subject: "rotator"}}
		other.Federations = []identity.Federation{{Issuer: "https://issuer.example", Subject: "other"}}
		mustCreateAgents(t, s, a, other)

		moved := identity.Federation{Issuer: "https://issuer.example", Subject: "rotator-renamed"}
		got, err := s.UpdateAgentCredentials(t.Context(), a.ID, at(time.Minute), func(cur identity.Credentials) (identity.Credentials, error) {
			if len(cur.Keys) != 1 || cur.Keys[0].KeyID != keys[0].KeyID || len(cur.Federations) != 1 {
				t.Errorf("update saw %+v, want the stored credentials", cur)
			}
			return identity.Credentials{Keys: append(cur.Keys, keys[1]), Federations: []identity.Federation{moved}}, nil
		})
		if err != nil {
			t.Fatalf("UpdateAgentCredentials = %v", err)
		}
		want := *a
		want.Keys, want.Federations, want.UpdatedAt = keys, []identity.Federation{moved}, at(time.Minute)
		if diff := cmp.Diff(&want, got, cmpOpts); diff != "" {
			t.Errorf("UpdateAgentCredentials returned (-want +got):\n%s", diff)
		}
		if stored, _ := s.GetAgent(t.Context(), a.ID); !cmp.Equal(&want, stored, cmpOpts) {
			t.Errorf("GetAgent after UpdateAgentCredentials = %+v", stored)
		}
		if _, err := s.FindFederated(t.Context(), "https://issuer.example", "rotator"); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("FindFederated(old subject) = %v, want ErrNotFound", err)
		}
		if f, err := s.FindFederated(t.Context(), moved.Issuer, moved.Subject); err != nil || f.ID != a.ID {
			t.Errorf("FindFederated(new subject) = %v, %v; want %s", f, err, a.ID)
		}

		for name, update := range map[string]func(identity.Credentials) (identity.Credentials, error){
			"taken federation": func(c identity.Credentials) (identity.Credentials, error) {
				c.Federations = append(c.Federations, other.Federations[0])
				return c, nil
			},
			"refusing update": func(identity.Credentials) (identity.Credentials, error) {
				return identity.Credentials{}, errRefused
			},
		} {
			_, err := s.UpdateAgentCredentials(t.Context(), a.ID, at(2*time.Minute), update)
			if err == nil {
				t.Errorf("%s: UpdateAgentCredentials = nil, want an error", name)
			}
			if name == "taken federation" && !errors.Is(err, identity.ErrFederationTaken) || name == "refusing update" && !errors.Is(err, errRefused) {
				t.Errorf("%s: UpdateAgentCredentials = %v", name, err)
			}
			if stored, _ := s.GetAgent(t.Context(), a.ID); !cmp.Equal(&want, stored, cmpOpts) {
				t.Errorf("%s: a refused update changed the agent: %+v", name, stored)
			}
		}

		got, err = s.UpdateAgentCredentials(t.Context(), a.ID, at(3*time.Minute), func(identity.Credentials) (identity.Credentials, error) {
			return identity.Credentials{}, nil
		})
		if err != nil || len(got.Keys) != 0 || len(got.Federations) != 0 {
			t.Errorf("UpdateAgentCredentials(remove all) = %+v, %v; want no credentials", got, err)
		}
		if _, err := s.UpdateAgentCredentials(t.Context(), agentID("absent"), t0, func(c identity.Credentials) (identity.Credentials, error) { return c, nil }); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("UpdateAgentCredentials(absent) = %v, want ErrNotFound", err)
		}
	})
}

// errRefused is an update function's own error.
var errRefused = errors.New("refused by the caller")
