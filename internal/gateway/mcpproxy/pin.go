package mcpproxy

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
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
)

// Canonical re-encodes a JSON value deterministically: object keys sorted
// (bytewise), no insignificant whitespace, numbers kept as written, no
// HTML escaping. Digests are taken over it so that an upstream that
// re-serializes the same definition differently (key order, spacing) does
// not trip the pin, while any change of content does. When raw is in that
// form already it is returned itself.
func Canonical(raw []byte) ([]byte, error) {
	if isCanonical(raw) {
		// The common case for a call's arguments (compact JSON, few
		// keys): decoding and re-encoding would give the same bytes back.
		return raw, nil
	}
	return canonicalize(raw)
}

// canonicalize is Canonical the long way: it decodes raw and encodes the
// value again.
func canonicalize(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isCanonical reports whether raw is one JSON value exactly as
// canonicalize writes it, in a form that one pass can check: no
// whitespace, object keys in strictly increasing byte order (so no
// duplicates), strings without escapes, control characters, invalid UTF-8,
// U+2028 or U+2029 (canonicalize writes each of those escaped), numbers as
// the JSON grammar has them (canonicalize keeps them as written), and at
// most maxCanonicalDepth levels of nesting. It may report false for
// canonical JSON (a string that needs an escape, say); Canonical then
// takes the long way, which also finds any error.
func isCanonical(raw []byte) bool {
	rest, ok := canonicalValue(raw, 0)
	return ok && len(rest) == 0
}

// maxCanonicalDepth bounds the nesting isCanonical follows.
const maxCanonicalDepth = 64

// canonicalValue checks the JSON value at the start of b (see
// isCanonical) and returns what follows it.
func canonicalValue(b []byte, depth int) ([]byte, bool) {
	if len(b) == 0 || depth > maxCanonicalDepth {
		return nil, false
	}
	switch b[0] {
	case '{':
		b = b[1:]
		if len(b) > 0 && b[0] == '}' {
			return b[1:], true
		}
		var prev []byte
		for first := true; ; first = false {
			key, rest, ok := canonicalString(b)
			if !ok || !first && bytes.Compare(prev, key) >= 0 || len(rest) == 0 || rest[0] != ':' {
				return nil, false
			}
			prev = key
			if b, ok = canonicalValue(rest[1:], depth+1); !ok || len(b) == 0 {
				return nil, false
			}
			switch b[0] {
			case ',':
				b = b[1:]
			case '}':
				return b[1:], true
			default:
				return nil, false
			}
		}
	case '[':
		b = b[1:]
		if len(b) > 0 && b[0] == ']' {
			return b[1:], true
		}
		for {
			var ok bool
			if b, ok = canonicalValue(b, depth+1); !ok || len(b) == 0 {
				return nil, false
			}
			switch b[0] {
			case ',':
				b = b[1:]
			case ']':
				return b[1:], true
			default:
				return nil, false
			}
		}
	case '"':
		_, rest, ok := canonicalString(b)
		return rest, ok
	case 't':
		return canonicalLiteral(b, "true")
	case 'f':
		return canonicalLiteral(b, "false")
	case 'n':
		return canonicalLiteral(b, "null")
	}
	return canonicalNumber(b)
}

func canonicalLiteral(b []byte, lit string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(lit)) {
		return nil, false
	}
	return b[len(lit):], true
}

// canonicalString checks the string at the start of b and returns its
// contents (which need no unescaping) and what follows it.
func canonicalString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	s = b[1 : 1+end]
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return nil, nil, false
		}
	}
	if !utf8.Valid(s) || bytes.Contains(s, []byte("\u2028")) || bytes.Contains(s, []byte("\u2029")) {
		return nil, nil, false
	}
	return s, b[2+end:], true
}

// canonicalNumber checks the number at the start of b against the JSON
// grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and returns
// what follows it.
func canonicalNumber(b []byte) ([]byte, bool) {
	digits := func(b []byte) int {
		n := 0
		for n < len(b) && '0' <= b[n] && b[n] <= '9' {
			n++
		}
		return n
	}
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	switch n := digits(b); {
	case n == 0 || n > 1 && b[0] == '0':
		return nil, false
	default:
		b = b[n:]
	}
	if len(b) > 0 && b[0] == '.' {
		n := digits(b[1:])
		if n == 0 {
			return nil, false
		}
		b = b[1+n:]
	}
	if len(b) > 0 && (b[0] == 'e' || b[0] == 'E') {
		b = b[1:]
		if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
			b = b[1:]
		}
		n := digits(b)
		if n == 0 {
			return nil, false
		}
		b = b[n:]
	}
	return b, true
}

// ToolDefinition is the canonical JSON of the pinned parts of a tool:
// name, description, input and output schema, annotations.
func ToolDefinition(t *mcp.Tool) ([]byte, error) {
	def := struct {
		Name         string               `json:"name"`
		Description  string               `json:"description,omitempty"`
		InputSchema  any                  `json:"inputSchema,omitempty"`
		OutputSchema any                  `json:"outputSchema,omitempty"`
		Annotations  *mcp.ToolAnnotations `json:"annotations,omitempty"`
	}{t.Name, t.Description, t.InputSchema, t.OutputSchema, t.Annotations}
	b, err := json.Marshal(def)
	if err != nil {
		return nil, err
	}
	return Canonical(b)
}

// ToolDigest is "sha256:" and the hex SHA-256 of ToolDefinition(t).
func ToolDigest(t *mcp.Tool) (string, error) {
	b, err := ToolDefinition(t)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// PinStatus is a tool definition's standing against its pin.
type PinStatus int

// Pin statuses.
const (
	PinApproved    PinStatus = iota // matches the approved definition
	PinQuarantined                  // differs: hidden and uncallable
	PinCollision                    // two upstream tools under one name: not served
)

// Pin is the approved definition of one upstream tool and, when the
// upstream has since changed it, the pending (quarantined) definition.
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

// ErrPinNotFound is returned by PinStore.GetPin and Pinner methods for an
// unknown tool.
var ErrPinNotFound = errors.New("tool pin not found")

// ErrDigestMismatch is returned by Pinner.Approve when the pending
// definition is not the one the admin reviewed.
var ErrDigestMismatch = errors.New("pending definition does not match the digest given")

// PinStore persists pins. Implementations are safe for concurrent use.
type PinStore interface {
	// GetPin returns the pin of upstream's tool, or ErrPinNotFound.
	GetPin(ctx context.Context, upstream, tool string) (*Pin, error)
	// PutPin inserts or replaces a pin.
	PutPin(ctx context.Context, p *Pin) error
	// ListPins returns every pin, ordered by upstream and tool.
	ListPins(ctx context.Context) ([]*Pin, error)
}

// MemoryPins is an in-memory PinStore.
type MemoryPins struct {
	mu   sync.Mutex
	pins map[pinKey]Pin
}

type pinKey struct{ upstream, tool string }

// NewMemoryPins returns an empty in-memory PinStore.
func NewMemoryPins() *MemoryPins { return &MemoryPins{pins: map[pinKey]Pin{}} }

// GetPin implements PinStore.
func (m *MemoryPins) GetPin(_ context.Context, upstream, tool string) (*Pin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pins[pinKey{upstream, tool}]
	if !ok {
		return nil, ErrPinNotFound
	}
	return &p, nil
}

// PutPin implements PinStore.
func (m *MemoryPins) PutPin(_ context.Context, p *Pin) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pins[pinKey{p.Upstream, p.Tool}] = *p
	return nil
}

// ListPins implements PinStore.
func (m *MemoryPins) ListPins(context.Context) ([]*Pin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Pin, 0, len(m.pins))
	for _, p := range m.pins {
		out = append(out, &p)
	}
	slices.SortFunc(out, func(a, b *Pin) int {
		return strings.Compare(a.Upstream+"\x00"+a.Tool, b.Upstream+"\x00"+b.Tool)
	})
	return out, nil
}

// pinner applies pins: it pins first sightings, quarantines changes and
// records both, caching pins in memory.
type pinner struct {
	store PinStore
	audit audit.Recorder
	log   *slog.Logger

	mu         sync.Mutex
	cache      map[pinKey]*Pin
	collisions map[string]bool
}

// Pinner is the admin's view of the gateway's tool pins.
type Pinner pinner

func (p *pinner) get(ctx context.Context, k pinKey) (*Pin, error) {
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

// observe checks a listed tool against its pin, pinning it on first
// sight and quarantining a changed definition. Both are recorded before
// the tool is served.
func (p *pinner) observe(ctx context.Context, upstream string, t *mcp.Tool, digest string) (PinStatus, error) {
	k := pinKey{upstream, t.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	pin, err := p.get(ctx, k)
	switch {
	case errors.Is(err, ErrPinNotFound):
		def, _ := ToolDefinition(t)
		now := time.Now().UTC()
		pin = &Pin{Upstream: upstream, Tool: t.Name, Digest: digest, Definition: def, PinnedAt: now, UpdatedAt: now}
		if err := p.audit.Record(ctx, audit.Event{
			Type: audit.TypeToolPinned, Actor: "mandate", Resource: upstream + "/" + t.Name, Point: "mcp",
			Details: map[string]string{"upstream": upstream, "tool": t.Name, "digest": digest},
		}); err != nil {
			return 0, err
		}
		if err := p.store.PutPin(ctx, pin); err != nil {
			return 0, err
		}
		p.cache[k] = pin
		return PinApproved, nil
	case err != nil:
		return 0, err
	case pin.Digest == digest:
		return PinApproved, nil
	case pin.PendingDigest == digest:
		return PinQuarantined, nil
	}
	def, _ := ToolDefinition(t)
	np := *pin
	np.PendingDigest, np.PendingDefinition, np.UpdatedAt = digest, def, time.Now().UTC()
	if err := p.audit.Record(ctx, audit.Event{
		Type: audit.TypeToolQuarantined, Actor: "mandate", Resource: upstream + "/" + t.Name, Point: "mcp",
		Reason:  "tool definition changed since it was approved",
		Details: map[string]string{"upstream": upstream, "tool": t.Name, "digest": pin.Digest, "pending_digest": digest},
	}); err != nil {
		return 0, err
	}
	if err := p.store.PutPin(ctx, &np); err != nil {
		return 0, err
	}
	p.cache[k] = &np
	p.log.Warn("tool quarantined: definition changed", "upstream", upstream, "tool", t.Name, "digest", digest)
	return PinQuarantined, nil
}

// approved reports whether digest is the approved definition.
func (p *pinner) approved(upstream, tool, digest string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin := p.cache[pinKey{upstream, tool}]
	return pin != nil && pin.Digest == digest
}

// collision reports (once per name and set of upstreams) that upstreams
// offer tools under one name.
func (p *pinner) collision(ctx context.Context, name string, upstreams []string) {
	key := name + "\x00" + strings.Join(upstreams, ",")
	p.mu.Lock()
	if p.collisions == nil {
		p.collisions = map[string]bool{}
	}
	seen := p.collisions[key]
	p.collisions[key] = true
	p.mu.Unlock()
	if seen {
		return
	}
	p.log.Warn("tool name collision across upstreams", "tool", name, "upstreams", upstreams)
	_ = p.audit.Record(context.WithoutCancel(ctx), audit.Event{
		Type: audit.TypeToolCollision, Actor: "mandate", Resource: name, Point: "mcp",
		Reason:  fmt.Sprintf("upstreams %s offer a tool named %q", strings.Join(upstreams, ", "), name),
		Details: map[string]string{"tool": name, "upstreams": strings.Join(upstreams, ",")},
	})
}

// List returns every pin.
func (p *Pinner) List(ctx context.Context) ([]*Pin, error) { return p.store.ListPins(ctx) }

// Get returns one pin.
func (p *Pinner) Get(ctx context.Context, upstream, tool string) (*Pin, error) {
	return p.store.GetPin(ctx, upstream, tool)
}

// Approve makes the pending definition of upstream's tool the approved
// one. digest, when not empty, must equal the pending digest (the
// definition the admin reviewed). It records tool.approved.
func (p *Pinner) Approve(ctx context.Context, upstream, tool, digest, actor string) (*Pin, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pin, err := p.store.GetPin(ctx, upstream, tool)
	if err != nil {
		return nil, err
	}
	if pin.PendingDigest == "" {
		return nil, fmt.Errorf("%w: %s/%s has no pending definition", ErrPinNotFound, upstream, tool)
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
	p.cache[pinKey{upstream, tool}] = &np
	return &np, nil
}
