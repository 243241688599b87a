package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/token"
)

// PolicyConfig configures the policy engine.
type PolicyConfig struct {
	// Dir is a directory of .cedar files, polled for changes.
	Dir string
	// Defaults includes mandate's default graded-trust policy set.
	Defaults bool
	// ShadowDir is a candidate policy set evaluated beside the live one
	// without being enforced; differences are recorded.
	ShadowDir string
	// ClassificationFile is a YAML file of risk rules, high-impact tools
	// and resource sensitivity rules (policy.ClassifierConfig).
	ClassificationFile string
	// PollInterval is how often the policy directories and the store's
	// API-managed policies are checked.
	PollInterval time.Duration
}

// AccessConfig configures the decision API's callers.
type AccessConfig struct {
	// PointTokenHashes are "sha256:<hex>" digests of the bearer tokens of
	// enforcement points (gateways, proxies) allowed to ask for decisions
	// on behalf of agents through the AuthZEN API.
	PointTokenHashes []string
}

// accessLayer is the policy engine, its loaders and the decision
// pipeline, as wired by New.
type accessLayer struct {
	engine   *policy.Engine
	loader   *policy.Loader
	shadow   *policy.Loader
	pipeline *access.Pipeline
	points   adminTokens
	apiStore policy.SourceStore
	recorder audit.Recorder
	// approvals serves ARAP on the AuthZEN API (approvals.go).
	approvals     *approval.Service
	callbackHosts []string
}

// newAccessLayer loads the policies (a bad policy set stops the start:
// there is no last good set yet) and builds the pipeline.
func newAccessLayer(ctx context.Context, cfg Config, backend store.Backend, authz *token.Server, recorder audit.Recorder, approvals *approval.Service, denials *approval.Denials, log *slog.Logger) (*accessLayer, error) {
	a := &accessLayer{recorder: recorder, apiStore: backend, approvals: approvals, callbackHosts: cfg.Approvals.CallbackHosts}
	if err := importPolicyFiles(ctx, filepath.Join(cfg.DataDir, "policies"), backend, recorder, log); err != nil {
		return nil, err
	}
	classes, err := loadClassification(cfg.Policy.ClassificationFile)
	if err != nil {
		return nil, err
	}
	hashes, err := parseTokenHashes(cfg.Access.PointTokenHashes)
	if err != nil {
		return nil, fmt.Errorf("access.point_token_hashes: %w", err)
	}
	a.points = adminTokens{hashes: hashes}

	a.engine = policy.NewEngine(nil, nil)
	a.loader = policy.NewLoader(policy.LoaderConfig{
		Engine: a.engine, Dir: cfg.Policy.Dir, Defaults: cfg.Policy.Defaults, API: a.apiStore,
		Interval: cfg.Policy.PollInterval, Logger: log.With("component", "policy"),
	})
	if err := a.loader.Reload(ctx); err != nil {
		return nil, fmt.Errorf("load policies:\n%w", err)
	}
	var shadow *policy.Engine
	if cfg.Policy.ShadowDir != "" {
		shadow = policy.NewEngine(nil, nil)
		a.shadow = policy.NewLoader(policy.LoaderConfig{
			Engine: shadow, Dir: cfg.Policy.ShadowDir, Defaults: cfg.Policy.Defaults, Name: "shadow",
			Interval: cfg.Policy.PollInterval, Logger: log.With("component", "policy-shadow"),
		})
		if err := a.shadow.Reload(ctx); err != nil {
			return nil, fmt.Errorf("load shadow policies:\n%w", err)
		}
	}
	a.pipeline, err = access.New(access.Config{
		Verifier: authz.Verifier(), Revocations: authz.Revocations(), Tasks: backend, Agents: backend,
		Engine: a.engine, Shadow: shadow, Classifier: classes, Recorder: recorder,
		MaxDelegationDepth: cfg.Tasks.MaxDepth, AgentTaintWindow: cfg.Tasks.AgentTaintWindow,
		Limits: mcpLimits(cfg.MCP), ApprovalService: approvals, Denials: denials, Logger: log.With("component", "access"),
	})
	if err != nil {
		return nil, err
	}
	// Delegation at token exchange is decided by the same pipeline.
	authz.DecideDelegationsWith(a.pipeline)
	return a, nil
}

// importPolicyFiles moves the API-managed policies that releases before
// the store kept them (<data_dir>/policies/<name>.cedar) into the store,
// once: each file is stored as its document, recorded as a policy change
// by "system", and renamed to <name>.cedar.imported, so that the next
// start does nothing. A document the store already has (another replica
// imported it, or it was changed through the API) is kept; the file is
// still renamed, and the skip logged. Files whose names are not policy
// names were ignored before and still are. Any other failure stops the start: the
// policies would otherwise silently go missing from the live set.
func importPolicyFiles(ctx context.Context, dir string, st policy.SourceStore, recorder audit.Recorder, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("import api policies: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".cedar")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if policy.ValidName(name) != nil {
			// Never live before either: the file store ignored it.
			log.Warn("api policy file not imported: not a valid policy name", "file", path)
			continue
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("import api policies: %w", err)
		}
		if _, err := st.GetPolicySource(ctx, name); err == nil {
			log.Warn("api policy file not imported: the store already has a policy of that name", "file", path, "policy", name)
		} else if !errors.Is(err, policy.ErrPolicyNotFound) {
			return fmt.Errorf("import api policies: %w", err)
		} else {
			if err := recorder.Record(ctx, audit.Event{
				Type: audit.TypePolicyChanged, Actor: "system", Action: "import", Resource: name,
				Details: map[string]string{"operation": "import", "new_digest": policy.SourceDigest(text), "file": path},
			}); err != nil {
				return fmt.Errorf("import api policies: %w", err)
			}
			_, err := st.PutPolicySource(ctx, &policy.StoredSource{Name: name, Text: text, UpdatedAt: time.Now(), UpdatedBy: "system"}, 0)
			if err != nil && !errors.Is(err, policy.ErrVersionConflict) {
				return fmt.Errorf("import api policies: %s: %w", path, err)
			}
			log.Info("api policy file imported into the store", "file", path, "policy", name)
		}
		if err := os.Rename(path, path+".imported"); err != nil {
			return fmt.Errorf("import api policies: %w", err)
		}
	}
	return nil
}

// collectors are the Prometheus collectors of the loaders and pipeline.
func (a *accessLayer) collectors() []prometheus.Collector {
	cs := append(a.loader.Collectors(), a.pipeline.Collectors()...)
	if a.shadow != nil {
		cs = append(cs, a.shadow.Collectors()...)
	}
	return cs
}

// run keeps the policy sets in step with their directories.
func (a *accessLayer) run(ctx context.Context) error {
	var wg sync.WaitGroup
	if a.shadow != nil {
		wg.Go(func() { _ = a.shadow.Run(ctx) })
	}
	err := a.loader.Run(ctx)
	wg.Wait()
	return err
}

// ReloadPolicies reloads the live (and shadow) policy sets now, as
// 'mandate policy reload' and SIGHUP do. On error the last good set
// stays live.
func (s *Server) ReloadPolicies(ctx context.Context) error {
	err := s.acc.loader.Reload(ctx)
	if s.acc.shadow != nil {
		err = errors.Join(err, s.acc.shadow.Reload(ctx))
	}
	return err
}

// mount adds the AuthZEN API to the main listener and the policy admin
// API to both listeners.
func (a *accessLayer) mount(mux, sockMux *http.ServeMux, publicURL string, tokens adminTokens, log *slog.Logger) {
	httpapi.NewAuthZEN(httpapi.AuthZENConfig{
		Pipeline: a.pipeline, PublicURL: publicURL, PointAuth: a.pointAuth,
		Approvals: a.approvals, CallbackHosts: a.callbackHosts,
		Logger: log.With("component", "authzen"),
	}).Register(mux)
	httpapi.NewOutcomes(httpapi.OutcomesConfig{Pipeline: a.pipeline, PublicURL: publicURL, Logger: log.With("component", "outcomes")}).Register(mux)
	pa := httpapi.NewPolicyAdmin(httpapi.PolicyAdminConfig{
		Engine: a.engine, Loader: a.loader, Store: a.apiStore, Recorder: a.recorder,
		Logger: log.With("component", "policyapi"),
	})
	for _, p := range []string{"/admin/v1/policies", "/admin/v1/policies/"} {
		mux.Handle(p, requireAdminToken(tokens, log, pa))
		sockMux.Handle(p, localAdmin(pa))
	}
}

// pointAuth recognizes an enforcement point's bearer token.
func (a *accessLayer) pointAuth(r *http.Request) (string, bool) {
	if len(a.points.hashes) == 0 {
		return "", false
	}
	actor, problem := a.points.check(r)
	if problem != "" {
		return "", false
	}
	return "point:" + strings.TrimPrefix(actor, "admin:token:"), true
}

// loadClassification reads the classification file (strict YAML).
func loadClassification(path string) (*policy.Classifier, error) {
	var cc policy.ClassifierConfig
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("policy.classification_file: %w", err)
		}
		if err := yaml.UnmarshalWithOptions(b, &cc, yaml.Strict()); err != nil {
			return nil, fmt.Errorf("policy.classification_file %s: %s", path, yaml.FormatError(err, false, true))
		}
	}
	c, err := policy.NewClassifier(cc)
	if err != nil {
		return nil, fmt.Errorf("policy.classification_file %s: %w", path, err)
	}
	return c, nil
}
