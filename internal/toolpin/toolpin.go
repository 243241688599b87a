// Package toolpin pins the definitions of upstream MCP tools: the first
// definition seen is approved, a later change of anything a model reads
// (name, title, description, schemas, annotations, icons, _meta)
// quarantines the tool until an admin approves the new definition, and a
// tool that disappears while another appears with the same description or
// input schema is reported as a rename and quarantined too.
//
// The package knows nothing of the MCP SDK: gateways convert what they are
// served into a Tool.
package toolpin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// Tool is one tool definition exactly as an upstream serves it. The JSON
// members hold raw JSON (any encoding; Definition canonicalises them);
// nil means absent.
type Tool struct {
	Name         string
	Title        string
	Description  string
	InputSchema  json.RawMessage
	OutputSchema json.RawMessage
	Annotations  json.RawMessage
	Icons        json.RawMessage
	Meta         json.RawMessage
}

// DigestPrefix starts every digest of the current definition encoding.
// Pins stored before title, icons and _meta were pinned carry
// LegacyDigestPrefix; see Pins.Observe for how they are upgraded.
const (
	DigestPrefix       = "sha256-v2:"
	LegacyDigestPrefix = "sha256:"
)

type wireTool struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema,omitempty"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
	Icons        json.RawMessage `json:"icons,omitempty"`
	Meta         json.RawMessage `json:"_meta,omitempty"`
}

// ParseTool decodes a tool from its MCP JSON encoding, every member of
// which must be one a pin covers (an unknown member is an error: what no
// pin covers must not be served unpinned). JSON null is absent.
func ParseTool(b []byte) (Tool, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w wireTool
	if err := dec.Decode(&w); err != nil {
		return Tool{}, fmt.Errorf("toolpin: a tool member the pin does not cover: %w", err)
	}
	null := func(raw json.RawMessage) json.RawMessage {
		if string(raw) == "null" {
			return nil
		}
		return raw
	}
	return Tool{
		Name: w.Name, Title: w.Title, Description: w.Description,
		InputSchema: null(w.InputSchema), OutputSchema: null(w.OutputSchema), Annotations: null(w.Annotations),
		Icons: null(w.Icons), Meta: null(w.Meta),
	}, nil
}

// Definition is the canonical JSON of the whole tool. The encoding is
// deterministic (the audit package's canonical JSON: keys sorted, no
// insignificant whitespace, numbers as written) so that an upstream that
// re-serialises the same definition differently does not trip the pin,
// while any change of content does; the digest is taken over these bytes.
func Definition(t Tool) ([]byte, error) {
	b, err := json.Marshal(wireTool(t))
	if err != nil {
		return nil, fmt.Errorf("toolpin: encode %q: %w", t.Name, err)
	}
	return audit.CanonicalJSON(b)
}

// Digest is DigestPrefix and the hex SHA-256 of Definition(t).
func Digest(t Tool) (string, error) {
	b, err := Definition(t)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return DigestPrefix + hex.EncodeToString(sum[:]), nil
}

// legacyDigest is the digest pins carried before the whole tool was
// pinned: name, description, schemas and annotations only.
func legacyDigest(t Tool) (string, error) {
	b, err := json.Marshal(wireTool{Name: t.Name, Description: t.Description, InputSchema: t.InputSchema, OutputSchema: t.OutputSchema, Annotations: t.Annotations})
	if err != nil {
		return "", err
	}
	if b, err = audit.CanonicalJSON(b); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return LegacyDigestPrefix + hex.EncodeToString(sum[:]), nil
}

// Status is a tool definition's standing against its pin.
type Status int

// Statuses.
const (
	Approved    Status = iota // matches the approved definition
	Quarantined               // differs, or is a rename: hidden and uncallable
	Collision                 // two upstream tools under one name: not served
)

// Pin is the approved definition of one upstream tool and, when the
// upstream has since changed it, the pending (quarantined) definition. A
// pin created by a rename has no approved definition (Digest is empty).
type Pin struct {
	Upstream   string          `json:"upstream"`
	Tool       string          `json:"tool"`
	Digest     string          `json:"digest"`
	Definition json.RawMessage `json:"definition"`
	// PendingDigest and PendingDefinition are the latest changed
	// definition, awaiting approval; empty when there is none.
	PendingDigest     string          `json:"pending_digest,omitempty"`
	PendingDefinition json.RawMessage `json:"pending_definition,omitempty"`
	PinnedAt          time.Time       `json:"pinned_at"`
	UpdatedAt         time.Time       `json:"updated_at"`
	ApprovedBy        string          `json:"approved_by,omitempty"`
}

// ErrNotFound is returned by Store.GetPin and Pins methods for an unknown
// tool, or by Pins.Approve for a tool with nothing pending.
var ErrNotFound = errors.New("tool pin not found")

// ErrDigestMismatch is returned by Pins.Approve when the pending
// definition is not the one the admin reviewed.
var ErrDigestMismatch = errors.New("pending definition does not match the digest given")

// Store persists pins. Implementations are safe for concurrent use.
type Store interface {
	// GetPin returns the pin of upstream's tool, ErrNotFound when there
	// is none, or a wrapped storage error.
	GetPin(ctx context.Context, upstream, tool string) (*Pin, error)
	// PutPin inserts or replaces a pin; it returns a wrapped storage
	// error (an invalid time included) and nothing else.
	PutPin(ctx context.Context, p *Pin) error
	// ListPins returns every pin ordered by upstream and tool (empty, not
	// nil, when there are none), or a wrapped storage error.
	ListPins(ctx context.Context) ([]*Pin, error)
}

// MemoryStore is an in-memory Store.
type MemoryStore struct {
	mu   sync.Mutex
	pins map[key]Pin
}

type key struct{ upstream, tool string }

// NewMemoryStore returns an empty in-memory Store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{pins: map[key]Pin{}} }

// GetPin implements Store.
func (m *MemoryStore) GetPin(_ context.Context, upstream, tool string) (*Pin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pins[key{upstream, tool}]
	if !ok {
		return nil, ErrNotFound
	}
	return &p, nil
}

// PutPin implements Store.
func (m *MemoryStore) PutPin(_ context.Context, p *Pin) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pins[key{p.Upstream, p.Tool}] = *p
	return nil
}

// ListPins implements Store.
func (m *MemoryStore) ListPins(context.Context) ([]*Pin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Pin, 0, len(m.pins))
	for _, p := range m.pins {
		out = append(out, &p)
	}
	SortPins(out)
	return out, nil
}

// SortPins orders pins by upstream, then tool.
func SortPins(pins []*Pin) {
	slices.SortFunc(pins, func(a, b *Pin) int {
		if c := strings.Compare(a.Upstream, b.Upstream); c != 0 {
			return c
		}
		return strings.Compare(a.Tool, b.Tool)
	})
}

// Config configures Pins.
type Config struct {
	Store Store          // required
	Audit audit.Recorder // required: every pin, quarantine and approval is recorded
	Log   *slog.Logger   // nil discards
}

// Pins applies pins: it pins first sightings, quarantines changes and
// renames, approves, and records each of them before it takes effect. It
// caches pins in memory and is safe for concurrent use.
type Pins struct {
	store Store
	audit audit.Recorder
	log   *slog.Logger

	mu    sync.Mutex
	cache map[key]*Pin
}

// New returns Pins over cfg.Store.
func New(cfg Config) *Pins {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Pins{store: cfg.Store, audit: cfg.Audit, log: cfg.Log, cache: map[key]*Pin{}}
}

func (p *Pins) get(ctx context.Context, k key) (*Pin, error) {
	if pin := p.cache[k]; pin != nil {
		return pin, nil
	}
	pin, err := p.store.GetPin(ctx, k.upstream, k.tool)
	if err != nil {
		return nil, err
	}
	p.cache[k] = pin
	return pin, nil
}

// Observed is one listed tool's standing.
type Observed struct {
	Digest string
	Status Status
}

// Observe checks one upstream's whole listing against its pins and
// returns each tool's standing, in order. A tool seen for the first time
// is pinned, unless it is a rename: a pinned tool of the same upstream
// that is absent from the listing had the same (non-empty) description or
// the same input schema; a rename is quarantined, naming old and new. A
// changed definition is quarantined. A pin of the legacy digest whose
// legacy fields still match is re-pinned over the whole tool (tool.pinned
// with upgraded_from); one whose fields changed is quarantined. A tool
// whose definition cannot be encoded is quarantined. Every change is
// recorded before it is stored, and an error from either is returned.
func (p *Pins) Observe(ctx context.Context, upstream string, tools []Tool) ([]Observed, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Observed, len(tools))
	listed := map[string]bool{}
	for _, t := range tools {
		listed[t.Name] = true
	}
	var gone []*Pin // loaded on the first new tool
	goneLoaded := false
	for i, t := range tools {
		def, err := Definition(t)
		if err != nil {
			out[i] = Observed{Status: Quarantined}
			continue
		}
		sum := sha256.Sum256(def)
		digest := DigestPrefix + hex.EncodeToString(sum[:])
		out[i].Digest = digest
		k := key{upstream, t.Name}
		pin, err := p.get(ctx, k)
		switch {
		case errors.Is(err, ErrNotFound):
			if !goneLoaded {
				goneLoaded = true
				all, err := p.store.ListPins(ctx)
				if err != nil {
					return nil, err
				}
				for _, q := range all {
					if q.Upstream == upstream && !listed[q.Tool] && len(q.Definition) > 0 {
						gone = append(gone, q)
					}
				}
			}
			if old := renamedFrom(t, gone); old != nil {
				st, err := p.quarantine(ctx, &Pin{Upstream: upstream, Tool: t.Name, PinnedAt: time.Now().UTC()}, digest, def,
					"rename: tool "+old.Tool+" disappeared and "+t.Name+" appeared with its description or input schema",
					map[string]string{"reason": "rename", "renamed_from": old.Tool})
				if err != nil {
					return nil, err
				}
				out[i].Status = st
				continue
			}
			if err := p.pin(ctx, upstream, t.Name, digest, def, nil); err != nil {
				return nil, err
			}
			out[i].Status = Approved
		case err != nil:
			return nil, err
		case pin.Digest == digest:
			out[i].Status = Approved
		case pin.PendingDigest == digest:
			out[i].Status = Quarantined
		case strings.HasPrefix(pin.Digest, LegacyDigestPrefix) && pin.PendingDigest == "" && legacyMatches(t, pin.Digest):
			if err := p.pin(ctx, upstream, t.Name, digest, def, pin); err != nil {
				return nil, err
			}
			out[i].Status = Approved
		default:
			st, err := p.quarantine(ctx, pin, digest, def, "tool definition changed since it was approved", nil)
			if err != nil {
				return nil, err
			}
			out[i].Status = st
		}
	}
	return out, nil
}

func legacyMatches(t Tool, digest string) bool {
	d, err := legacyDigest(t)
	return err == nil && d == digest
}

// renamedFrom returns the vanished pin t looks like a rename of, or nil.
func renamedFrom(t Tool, gone []*Pin) *Pin {
	schema, _ := canonicalOrNil(t.InputSchema)
	for _, q := range gone {
		var w wireTool
		if json.Unmarshal(q.Definition, &w) != nil {
			continue
		}
		if t.Description != "" && w.Description == t.Description {
			return q
		}
		if old, _ := canonicalOrNil(w.InputSchema); schema != nil && old != nil && bytes.Equal(schema, old) {
			return q
		}
	}
	return nil
}

func canonicalOrNil(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	return audit.CanonicalJSON(raw)
}

// pin records and stores a first sighting (old nil) or the upgrade of a
// legacy pin.
func (p *Pins) pin(ctx context.Context, upstream, tool, digest string, def []byte, old *Pin) error {
	now := time.Now().UTC()
	np := &Pin{Upstream: upstream, Tool: tool, Digest: digest, Definition: def, PinnedAt: now, UpdatedAt: now}
	details := map[string]string{"upstream": upstream, "tool": tool, "digest": digest}
	if old != nil {
		cp := *old
		cp.Digest, cp.Definition, cp.UpdatedAt = digest, def, now
		np = &cp
		details["upgraded_from"] = old.Digest
	}
	if err := p.audit.Record(ctx, audit.Event{
		Type: audit.TypeToolPinned, Actor: "mandate", Resource: upstream + "/" + tool, Point: "mcp", Details: details,
	}); err != nil {
		return err
	}
	if err := p.store.PutPin(ctx, np); err != nil {
		return err
	}
	p.cache[key{upstream, tool}] = np
	return nil
}

func (p *Pins) quarantine(ctx context.Context, pin *Pin, digest string, def []byte, reason string, extra map[string]string) (Status, error) {
	np := *pin
	np.PendingDigest, np.PendingDefinition, np.UpdatedAt = digest, def, time.Now().UTC()
	details := map[string]string{"upstream": pin.Upstream, "tool": pin.Tool, "digest": pin.Digest, "pending_digest": digest}
	for k, v := range extra {
		details[k] = v
	}
	if err := p.audit.Record(ctx, audit.Event{
		Type: audit.TypeToolQuarantined, Actor: "mandate", Resource: pin.Upstream + "/" + pin.Tool, Point: "mcp",
		Reason: reason, Details: details,
	}); err != nil {
		return 0, err
	}
	if err := p.store.PutPin(ctx, &np); err != nil {
		return 0, err
	}
	p.cache[key{pin.Upstream, pin.Tool}] = &np
	p.log.Warn("tool quarantined", "upstream", pin.Upstream, "tool", pin.Tool, "reason", reason, "digest", digest)
	return Quarantined, nil
}

// Approved reports whether digest is the approved definition of
// upstream's tool (as last observed or approved).
func (p *Pins) Approved(upstream, tool, digest string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin := p.cache[key{upstream, tool}]
	return pin != nil && digest != "" && pin.Digest == digest
}

// List returns every pin.
func (p *Pins) List(ctx context.Context) ([]*Pin, error) { return p.store.ListPins(ctx) }

// Get returns one pin, or ErrNotFound.
func (p *Pins) Get(ctx context.Context, upstream, tool string) (*Pin, error) {
	return p.store.GetPin(ctx, upstream, tool)
}

// Approve makes the pending definition of upstream's tool the approved
// one. digest, when not empty, must equal the pending digest (the
// definition the admin reviewed), else ErrDigestMismatch; a tool with
// nothing pending is ErrNotFound. It records tool.approved.
func (p *Pins) Approve(ctx context.Context, upstream, tool, digest, actor string) (*Pin, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin, err := p.store.GetPin(ctx, upstream, tool)
	if err != nil {
		return nil, err
	}
	if pin.PendingDigest == "" {
		return nil, fmt.Errorf("%w: %s/%s has no pending definition", ErrNotFound, upstream, tool)
	}
	if digest != "" && digest != pin.PendingDigest {
		return nil, ErrDigestMismatch
	}
	np := *pin
	np.Digest, np.Definition = pin.PendingDigest, pin.PendingDefinition
	np.PendingDigest, np.PendingDefinition = "", nil
	np.UpdatedAt, np.ApprovedBy = time.Now().UTC(), actor
	if err := p.audit.Record(ctx, audit.Event{
		Type: audit.TypeToolApproved, Actor: actor, Resource: upstream + "/" + tool, Point: "mcp",
		Details: map[string]string{"upstream": upstream, "tool": tool, "digest": np.Digest, "previous_digest": pin.Digest},
	}); err != nil {
		return nil, err
	}
	if err := p.store.PutPin(ctx, &np); err != nil {
		return nil, err
	}
	p.cache[key{upstream, tool}] = &np
	return &np, nil
}
