package policy

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// Annotations mandate gives meaning to.
const (
	// AnnotationID names a policy (Cedar's convention); without it a
	// policy is named "<source>#<index>".
	AnnotationID = "id"
	// AnnotationApproval on a forbid turns its denial into
	// approval_required; the value names the approval that lifts it.
	AnnotationApproval = "approval"
	// AnnotationReason and AnnotationMessage give the text shown with a
	// decision (reason preferred).
	AnnotationReason  = "reason"
	AnnotationMessage = "message"
	// AnnotationObligation lists comma-separated obligations the
	// enforcement point must fulfil when the policy determines the
	// decision (e.g. "redact", "full_arguments", "inject_secret:github").
	AnnotationObligation = "obligation"
)

// Limits on policy sources.
const (
	// MaxSourceSize is the largest policy source (file) accepted.
	MaxSourceSize = 4 << 20
	// MaxPolicies bounds the policies of one set.
	MaxPolicies = 100_000
)

// Source is one policy document: a .cedar file or an API-managed policy.
type Source struct {
	// Name identifies the source in errors and policy ids: a file path
	// relative to the policy directory, or "api:<name>".
	Name string `json:"name"`
	Text []byte `json:"-"`
}

// ErrInvalidPolicy marks a policy set that fails to parse or validate.
var ErrInvalidPolicy = errors.New("invalid policy")

// Problem is one reason a policy set does not compile, with its location.
type Problem struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Policy string `json:"policy,omitempty"`
	Msg    string `json:"message"`
}

// String formats p as "file:line:col: [policy: ]message".
func (p Problem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", p.File, p.Line, p.Column)
	if p.Policy != "" {
		b.WriteString("policy " + strconv.Quote(p.Policy) + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// CompileError lists every problem found in a policy set. It matches
// ErrInvalidPolicy.
type CompileError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *CompileError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is reports whether target is ErrInvalidPolicy.
func (e *CompileError) Is(target error) bool { return target == ErrInvalidPolicy }

// Info describes one compiled policy.
type Info struct {
	ID       string   `json:"id"`
	Effect   string   `json:"effect"` // permit | forbid
	Approval string   `json:"approval,omitempty"`
	Message  string   `json:"message,omitempty"`
	Actions  []string `json:"actions"` // the actions its scope applies to
	// Resource is the resource its scope is pinned to, or "".
	Resource    string   `json:"resource,omitempty"`
	Obligations []string `json:"obligations,omitempty"`
	Position    string   `json:"position"`
}

// compiled is one policy with the annotations mandate interprets.
type compiled struct {
	Info
	policy      *cedar.Policy
	forbid      bool
	hasApproval bool
	pinned      bool
	pin         types.EntityUID
	// pinIn marks "resource in X" (or "is T in X"): it also matches the
	// resources whose parent is X.
	pinIn bool
}

// bucket holds the policies of one action: those whose resource scope is
// pinned to one entity (resource == X, resource in X) by that entity, the
// "in" ones also in under (looked up by the resource's parent server), the
// rest in forbids and permits.
type bucket struct {
	forbids, permits []*compiled
	byResource       map[types.EntityUID]*pinned
	under            map[types.EntityUID]*pinned
}

type pinned struct {
	forbids, permits []*compiled
}

// Set is a compiled, validated, indexed policy set. It is immutable and
// safe for concurrent use.
type Set struct {
	byAction [10]bucket // indexed by actionIndex
	byID     map[string]*compiled
	ordered  []*compiled
	sources  []string
	// approvalVersions fingerprints, per approval name, the forbids that
	// ask for it (see ApprovalVersion).
	approvalVersions map[string]string
}

var parsePosRE = regexp.MustCompile(`<input>:(\d+):(\d+)`)

// Compile parses, validates against the schema and indexes sources. It
// returns a *CompileError listing every problem, with its location.
func Compile(sources []Source) (*Set, error) {
	return new(Compiler).Compile(sources)
}

// Compiler compiles policy sets like Compile and remembers, per source
// name, the parsed and validated policies of the last content it saw
// (by SHA-256), so that recompiling a large set after one file changed
// parses and validates only that file. Parsed policies are immutable and
// shared between the sets. A Compiler is safe for concurrent use; its
// zero value is ready.
type Compiler struct {
	mu    sync.Mutex
	cache map[string]*parsedSource
}

// parsedSource is one source's parse and validation result.
type parsedSource struct {
	sum   [sha256.Size]byte
	list  cedar.PolicyList
	probs []Problem // parse and per-policy validation problems
}

// parse parses and validates one source (or returns the cached result).
func (c *Compiler) parse(v, av *validate.Validator, src Source) *parsedSource {
	sum := sha256.Sum256(src.Text)
	c.mu.Lock()
	ps := c.cache[src.Name]
	c.mu.Unlock()
	if ps != nil && ps.sum == sum {
		return ps
	}
	ps = &parsedSource{sum: sum}
	list, err := parseSource(src.Name, src.Text)
	if err != nil {
		ps.probs = []Problem{parseProblem(src.Name, err)}
	}
	ps.list = list
	for i, p := range list {
		id := policyID(src.Name, i, p)
		pos := p.Position()
		if wholeContextUse((*xast.Policy)(p.AST())) {
			ps.probs = append(ps.probs, Problem{File: src.Name, Line: pos.Line, Column: pos.Column, Policy: id,
				Msg: "use the context's attributes (context.task, context.risk, ...), not the context as a whole value"})
		}
		pv := v
		if approvalScoped((*xast.Policy)(p.AST())) {
			// approval.decide has a principal and context of its own
			// (approval.cedarschema): its policies are validated there.
			pv = av
		}
		if err := pv.Policy(id, (*xast.Policy)(p.AST())); err != nil {
			for _, msg := range dedupe(strings.Split(err.Error(), "\n")) {
				ps.probs = append(ps.probs, Problem{File: src.Name, Line: pos.Line, Column: pos.Column, Policy: id, Msg: msg})
			}
		}
	}
	c.mu.Lock()
	if c.cache == nil {
		c.cache = make(map[string]*parsedSource)
	}
	c.cache[src.Name] = ps
	c.mu.Unlock()
	return ps
}

// Compile is the package-level Compile, reusing what this Compiler has
// already parsed. Sources it no longer sees are forgotten.
func (c *Compiler) Compile(sources []Source) (*Set, error) {
	v, err := newValidator()
	if err != nil {
		return nil, err
	}
	av, err := newApprovalValidator()
	if err != nil {
		return nil, err
	}
	s := &Set{byID: make(map[string]*compiled)}
	var probs []Problem
	seen := make(map[string]bool, len(sources))
	for _, src := range sources {
		s.sources = append(s.sources, src.Name)
		seen[src.Name] = true
		if len(src.Text) > MaxSourceSize {
			probs = append(probs, Problem{File: src.Name, Line: 1, Column: 1, Msg: fmt.Sprintf("source is larger than %d bytes", MaxSourceSize)})
			continue
		}
		ps := c.parse(v, av, src)
		probs = append(probs, ps.probs...)
		for i, p := range ps.list {
			if _, perr := s.add(src.Name, i, p); perr != nil {
				probs = append(probs, *perr)
			}
		}
		if len(s.ordered) > MaxPolicies {
			probs = append(probs, Problem{File: src.Name, Line: 1, Column: 1, Msg: fmt.Sprintf("more than %d policies", MaxPolicies)})
			break
		}
	}
	c.mu.Lock()
	for name := range c.cache {
		if !seen[name] {
			delete(c.cache, name)
		}
	}
	c.mu.Unlock()
	if len(probs) > 0 {
		return nil, &CompileError{Problems: probs}
	}
	for _, cp := range s.ordered {
		s.index(cp)
	}
	s.approvalVersions = approvalVersions(s.ordered)
	return s, nil
}

// policyID is a policy's @id, or "<source>#<index>".
func policyID(file string, i int, p *cedar.Policy) string {
	if id := string(p.Annotations()[AnnotationID]); id != "" {
		return id
	}
	return file + "#" + strconv.Itoa(i)
}

func dedupe(ss []string) []string {
	var out []string
	for _, m := range ss {
		if m = strings.TrimSpace(m); m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// parseProblem locates a cedar-go parse error ("parse error at
// <input>:L:C ...").
func parseProblem(file string, err error) Problem {
	msg := err.Error()
	p := Problem{File: file, Line: 1, Column: 1, Msg: msg}
	if m := parsePosRE.FindStringSubmatchIndex(msg); m != nil {
		p.Line, _ = strconv.Atoi(msg[m[2]:m[3]])
		p.Column, _ = strconv.Atoi(msg[m[4]:m[5]])
		p.Msg = strings.TrimSpace(strings.TrimPrefix(msg[m[1]:], ":"))
		if pre := strings.TrimSuffix(strings.TrimSpace(msg[:m[0]]), " at"); pre != "" {
			p.Msg = pre + ": " + p.Msg
		}
	}
	// Some errors (invalid UTF-8) carry position 0:0: point at the start.
	p.Line, p.Column = max(p.Line, 1), max(p.Column, 1)
	p.Msg = strings.ReplaceAll(p.Msg, "::", ":")
	return p
}

// add records one parsed policy, reading its annotations.
func (s *Set) add(file string, i int, p *cedar.Policy) (*compiled, *Problem) {
	pos := p.Position()
	ann := p.Annotations()
	c := &compiled{policy: p, forbid: p.Effect() == cedar.Forbid}
	c.ID = policyID(file, i, p)
	c.Effect = "permit"
	if c.forbid {
		c.Effect = "forbid"
	}
	c.Position = fmt.Sprintf("%s:%d:%d", file, pos.Line, pos.Column)
	prob := func(msg string) *Problem {
		return &Problem{File: file, Line: pos.Line, Column: pos.Column, Policy: c.ID, Msg: msg}
	}
	if prev, dup := s.byID[c.ID]; dup {
		return nil, prob("duplicate policy id (also at " + prev.Position + ")")
	}
	if a, ok := ann[AnnotationApproval]; ok {
		if !c.forbid {
			return nil, prob("@approval is only meaningful on a forbid")
		}
		c.hasApproval, c.Approval = true, string(a)
	}
	c.Message = string(ann[AnnotationReason])
	if c.Message == "" {
		c.Message = string(ann[AnnotationMessage])
	}
	if o := string(ann[AnnotationObligation]); o != "" {
		for _, part := range strings.Split(o, ",") {
			if part = strings.TrimSpace(part); part != "" {
				c.Obligations = append(c.Obligations, part)
			}
		}
	}
	ast := (*xast.Policy)(p.AST())
	switch sc := ast.Action.(type) {
	case xast.ScopeTypeEq:
		c.Actions = scopeActions(sc.Entity)
	case xast.ScopeTypeIn:
		c.Actions = scopeActions(sc.Entity)
	case xast.ScopeTypeInSet:
		for _, e := range sc.Entities {
			c.Actions = append(c.Actions, scopeActions(e)...)
		}
	default:
		c.Actions = Actions
	}
	switch sc := ast.Resource.(type) {
	case xast.ScopeTypeEq:
		c.Resource, c.pin, c.pinned = sc.Entity.String(), sc.Entity, true
	case xast.ScopeTypeIn:
		c.Resource, c.pin, c.pinned, c.pinIn = "in "+sc.Entity.String(), sc.Entity, true, true
	case xast.ScopeTypeIsIn:
		c.Resource, c.pin, c.pinned, c.pinIn = "in "+sc.Entity.String(), sc.Entity, true, true
	}
	s.byID[c.ID] = c
	s.ordered = append(s.ordered, c)
	return c, nil
}

// scopeActions maps an action entity to the action kinds it names. The
// validator rejects unknown actions; this is only the index.
func scopeActions(e types.EntityUID) []string {
	if e.Type == typeAction && actionIndex(string(e.ID)) >= 0 {
		return []string{string(e.ID)}
	}
	return nil
}

// actionIndex is the index of action's bucket: its place in Actions, or
// the one after them for approval.decide; -1 for an unknown action.
func actionIndex(action string) int {
	if action == ActionApprovalDecide {
		return len(Actions)
	}
	return slices.Index(Actions, action)
}

func (s *Set) index(c *compiled) {
	for _, a := range c.Actions {
		b := &s.byAction[actionIndex(a)]
		if c.pinned {
			b.byResource = addPinned(b.byResource, c)
			if c.pinIn {
				b.under = addPinned(b.under, c)
			}
			continue
		}
		if c.forbid {
			b.forbids = append(b.forbids, c)
		} else {
			b.permits = append(b.permits, c)
		}
	}
}

func addPinned(m map[types.EntityUID]*pinned, c *compiled) map[types.EntityUID]*pinned {
	if m == nil {
		m = make(map[types.EntityUID]*pinned)
	}
	p := m[c.pin]
	if p == nil {
		p = &pinned{}
		m[c.pin] = p
	}
	if c.forbid {
		p.forbids = append(p.forbids, c)
	} else {
		p.permits = append(p.permits, c)
	}
	return m
}

// Len returns the number of policies in the set.
func (s *Set) Len() int { return len(s.ordered) }

// Sources returns the names of the sources the set was compiled from.
func (s *Set) Sources() []string { return slices.Clone(s.sources) }

// Policies describes the set's policies in source order.
func (s *Set) Policies() []Info {
	out := make([]Info, len(s.ordered))
	for i, c := range s.ordered {
		out[i] = c.Info
	}
	return out
}

// candidates returns the forbids and permits that may apply to action on
// resource (whose parent is server, if hasServer): the action's unpinned
// policies, those pinned to resource, and those pinned "in" server.
func (s *Set) candidates(action string, resource, server types.EntityUID, hasServer bool) (forbids, permits [3][]*compiled) {
	i := actionIndex(action)
	if i < 0 {
		return
	}
	b := &s.byAction[i]
	forbids[0], permits[0] = b.forbids, b.permits
	if p := b.byResource[resource]; p != nil {
		forbids[1], permits[1] = p.forbids, p.permits
	}
	if hasServer {
		if p := b.under[server]; p != nil {
			forbids[2], permits[2] = p.forbids, p.permits
		}
	}
	return
}

// policyList is a cedar.PolicyIterator over up to six slices of
// policies (unpinned, pinned and pinned-under; forbids and permits).
// seq, when set, is l.each bound once (see newPolicyList), so that All
// does not allocate a method value on every decision.
type policyList struct {
	parts [6][]*compiled
	seq   iter.Seq2[cedar.PolicyID, *cedar.Policy]
}

// set fills the list with a (and b, if given).
func (l *policyList) set(a, b [3][]*compiled) {
	copy(l.parts[:3], a[:])
	copy(l.parts[3:], b[:])
}

// newPolicyList returns an empty list whose All does not allocate.
func newPolicyList() *policyList {
	l := &policyList{}
	l.seq = l.each
	return l
}

func (l *policyList) empty() bool { return l.len() == 0 }

func (l *policyList) len() int {
	n := 0
	for _, p := range l.parts {
		n += len(p)
	}
	return n
}

// All implements cedar.PolicyIterator.
func (l *policyList) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	if l.seq != nil {
		return l.seq
	}
	return l.each
}

func (l *policyList) each(yield func(cedar.PolicyID, *cedar.Policy) bool) {
	for _, s := range l.parts {
		for _, c := range s {
			if !yield(cedar.PolicyID(c.ID), c.policy) {
				return
			}
		}
	}
}
