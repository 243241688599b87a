package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
	"github.com/mandatehq/mandate/internal/web"
)

// OAuthConfig configures the authorization code flow stock MCP clients
// use: which clients may ask people for a mandate, and how.
type OAuthConfig struct {
	// Clients are the client rules, tried in order.
	Clients []OAuthClient
	// Registration turns on RFC 7591 dynamic client registration at
	// /oauth/register (a rule with registered: true admits the clients).
	Registration bool
	// MetadataAllowPrivate lets Client ID Metadata Documents be fetched
	// from loopback and private addresses (tests, labs; never production).
	MetadataAllowPrivate bool
	// MetadataTransport, if set, fetches the documents instead of the
	// default guarded transport (token.MetadataFetch.Transport: it must do
	// the address checks itself). No config key: for programs embedding
	// the server and tests (one trusting a test CA on loopback).
	MetadataTransport http.RoundTripper `json:"-" yaml:"-"`
}

// OAuthClient is one client rule (token.ClientRule).
type OAuthClient struct {
	ClientID        string             `json:"client_id,omitempty" yaml:"client_id"`
	Agent           string             `json:"agent,omitempty" yaml:"agent"`
	ClientIDPattern string             `json:"client_id_pattern,omitempty" yaml:"client_id_pattern"`
	Registered      bool               `json:"registered,omitempty" yaml:"registered"`
	Tier            string             `json:"tier,omitempty" yaml:"tier"`
	Owner           string             `json:"owner,omitempty" yaml:"owner"`
	Entitlement     *ClientEntitlement `json:"entitlement,omitempty" yaml:"entitlement"`
}

// ClientEntitlement is the entitlement given to the agents of clients a
// rule admits.
type ClientEntitlement struct {
	Scope          []string `json:"scope" yaml:"scope"`
	MaxSensitivity string   `json:"max_sensitivity,omitempty" yaml:"max_sensitivity"`
	MaxTaskTTL     string   `json:"max_task_ttl,omitempty" yaml:"max_task_ttl"`
}

// PeopleConfig configures people's sign-in.
type PeopleConfig struct {
	// IdPs are the OpenID Connect providers people sign in at; none: the
	// local administrator's one-time link only.
	IdPs []PeopleIdP
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// LocalPrincipal names the local administrator on tasks.
	LocalPrincipal string
}

// PeopleIdP is one identity provider (web.IdP).
type PeopleIdP struct {
	Name           string   `json:"name" yaml:"name"`
	Display        string   `json:"display,omitempty" yaml:"display"`
	Issuer         string   `json:"issuer" yaml:"issuer"`
	ClientID       string   `json:"client_id" yaml:"client_id"`
	ClientSecret   string   `json:"client_secret,omitempty" yaml:"client_secret"`
	Scopes         []string `json:"scopes,omitempty" yaml:"scopes"`
	PrincipalClaim string   `json:"principal_claim,omitempty" yaml:"principal_claim"`
	GroupsClaim    string   `json:"groups_claim,omitempty" yaml:"groups_claim"`
	AdminGroups    []string `json:"admin_groups,omitempty" yaml:"admin_groups"`
}

// clientRules converts the configured rules for the token layer.
func clientRules(cs []OAuthClient) ([]token.ClientRule, error) {
	out := make([]token.ClientRule, 0, len(cs))
	for i, c := range cs {
		r := token.ClientRule{ClientID: c.ClientID, Pattern: c.ClientIDPattern, Registered: c.Registered,
			Tier: identity.Tier(c.Tier), Owner: c.Owner}
		if c.Agent != "" {
			id, err := identity.ParseID(c.Agent)
			if err != nil {
				return nil, fmt.Errorf("oauth.clients[%d].agent: %v", i, err)
			}
			r.Agent = id
		}
		if e := c.Entitlement; e != nil {
			sc, err := task.ParseScopeList(e.Scope)
			if err != nil {
				return nil, fmt.Errorf("oauth.clients[%d].entitlement.scope: %v", i, err)
			}
			ttl := 8 * time.Hour
			if e.MaxTaskTTL != "" {
				if ttl, err = time.ParseDuration(e.MaxTaskTTL); err != nil {
					return nil, fmt.Errorf("oauth.clients[%d].entitlement.max_task_ttl: %v", i, err)
				}
			}
			sens := task.Sensitivity(e.MaxSensitivity)
			if sens == "" {
				sens = task.SensitivityInternal
			}
			r.Entitlement = &task.Entitlement{Scope: sc, MaxSensitivity: sens, MaxTaskTTL: ttl}
		}
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("oauth.clients[%d]: %v", i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func webIdPs(ps []PeopleIdP) []web.IdP {
	out := make([]web.IdP, 0, len(ps))
	for _, p := range ps {
		out = append(out, web.IdP{Name: p.Name, Display: p.Display, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
			Scopes: p.Scopes, PrincipalClaim: p.PrincipalClaim, GroupsClaim: p.GroupsClaim, AdminGroups: p.AdminGroups})
	}
	return out
}

// mountPeople builds the sign-in, consent and /me pages, the local
// login-link admin endpoint, and, with no identity provider configured,
// prints the first one-time sign-in link.
func (s *Server) mountPeople(mux, sockMux *http.ServeMux, rec audit.Recorder, tasks *admin.Service) error {
	pages, err := web.New(web.Config{
		Authz: s.authz, People: s.backend, Tasks: tasks, Audit: rec, PublicURL: s.publicURL, Secure: s.cfg.TLS.Enabled(),
		IdPs: webIdPs(s.cfg.People.IdPs), LocalPrincipal: s.cfg.People.LocalPrincipal, SessionTTL: s.cfg.People.SessionTTL,
		Logger: s.log.With("component", "web"),
	})
	if err != nil {
		return err
	}
	s.pages = pages
	pages.Register(mux)
	if err := pages.RegisterApprovals(mux, s.approvalPages()); err != nil {
		return err
	}
	sockMux.HandleFunc("POST /admin/v1/login-links", func(w http.ResponseWriter, r *http.Request) {
		link, err := pages.NewLocalLink(0)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"title": err.Error()})
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"url": link, "expires_in": web.DefaultLinkTTL.String()})
	})
	return nil
}

// LoginLink returns a new one-time sign-in link for the local
// administrator (what `mandate serve` prints when no identity provider is
// configured).
func (s *Server) LoginLink() (string, error) {
	if s.pages == nil {
		return "", errors.New("the sign-in pages are not mounted")
	}
	return s.pages.NewLocalLink(0)
}

// HasIdPs reports whether people sign in at an identity provider.
func (s *Server) HasIdPs() bool { return len(s.cfg.People.IdPs) > 0 }

// decodeJSONList decodes a JSON array strictly (unknown fields refused).
func decodeJSONList[T any](raw, what, example string) ([]T, error) {
	var out []T
	if strings.TrimSpace(raw) == "" {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("invalid JSON list of %s (want %s): %v", what, example, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON list of %s: trailing data", what)
	}
	return out, nil
}
