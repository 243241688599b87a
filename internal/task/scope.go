package task

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mandatehq/mandate/internal/resource"
)

// Actions are the kinds of operation an agent can attempt; scope patterns
// and policies refer to them by these names.
var Actions = []string{
	"tool.call", "resource.read", "prompt.get",
	"file.read", "file.write", "shell.exec",
	"http.request", "secret.use", "task.delegate",
}

// Limits on scopes.
const (
	MaxScopePatterns = 64
	MaxPatternLen    = 512
)

// Pattern is one scope entry, "ACTION:RESOURCE". ACTION is an action name
// (file.read), a family wildcard (file.*) or "*". RESOURCE is a glob in
// which "*" matches any run of characters other than "/" and "**" matches
// any run of characters at all; a pattern without ":RESOURCE" means every
// resource ("**"). The literal parts of RESOURCE follow the canonical rules
// of package resource for the action (docs/resources.md), the rules every
// resource is checked against before it is matched. Examples:
//
//	file.read:/repo/**
//	tool.call:github/create_*
//	http.request:*.github.com
//	task.delegate
type Pattern struct {
	action   string
	resource string
	glob     []globToken
}

type globToken struct {
	kind globKind
	lit  byte
}

type globKind uint8

const (
	globLiteral    globKind = iota
	globStar                // "*": any run without "/"
	globDoubleStar          // "**": any run
)

// ParsePattern parses one scope entry.
func ParsePattern(s string) (Pattern, error) {
	if s == "" || len(s) > MaxPatternLen {
		return Pattern{}, fmt.Errorf("%w: scope pattern must be 1-%d bytes", ErrInvalid, MaxPatternLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return Pattern{}, fmt.Errorf("%w: scope pattern %q: byte %d is not a visible ASCII character", ErrInvalid, s, i)
		}
	}
	action, res, hasResource := strings.Cut(s, ":")
	if !hasResource {
		res = "**"
	}
	if !validActionPattern(action) {
		return Pattern{}, fmt.Errorf("%w: scope pattern %q: unknown action %q (want one of %s, FAMILY.* or *)", ErrInvalid, s, action, strings.Join(Actions, ", "))
	}
	if res == "" {
		return Pattern{}, fmt.Errorf("%w: scope pattern %q: empty resource (omit \":\" to mean every resource)", ErrInvalid, s)
	}
	if resource.Traverses(res) {
		return Pattern{}, fmt.Errorf("%w: scope pattern %q: resource has an empty, \".\" or \"..\" segment or a percent-encoded dot or slash; give it in canonical form", ErrInvalid, s)
	}
	p := Pattern{action: action, resource: res}
	for i := 0; i < len(res); i++ {
		if res[i] != '*' {
			p.glob = append(p.glob, globToken{kind: globLiteral, lit: res[i]})
			continue
		}
		if i+1 < len(res) && res[i+1] == '*' {
			if i+2 < len(res) && res[i+2] == '*' {
				return Pattern{}, fmt.Errorf("%w: scope pattern %q: \"***\" is ambiguous", ErrInvalid, s)
			}
			p.glob = append(p.glob, globToken{kind: globDoubleStar})
			i++
			continue
		}
		p.glob = append(p.glob, globToken{kind: globStar})
	}
	if err := p.checkCanonical(); err != nil {
		return Pattern{}, fmt.Errorf("%w: scope pattern %q: %w", ErrInvalid, s, err)
	}
	return p, nil
}

// checkCanonical reports whether the literal parts of the pattern's
// resource are canonical by the rules of package resource, the ones every
// resource is checked against before it is matched: a pattern must be
// written in the same canonical form as the resources it is meant to
// match ("http.request:EXAMPLE.com", "file.read:/repo/src/" or
// "resource.read:FILE:///repo/**" would match nothing, or not what the
// writer thought).
//
// It checks witnesses: the resource with every wildcard replaced by "x"
// (or every one by "1", for a port), and a leading wildcard also by "/x"
// (a path) or "x:///x" (a URI). The pattern is accepted when some
// witness is a canonical resource for some action the pattern covers. A
// pattern of wildcards alone has no literal part and is accepted.
func (p Pattern) checkCanonical() error {
	if !slices.ContainsFunc(p.glob, func(t globToken) bool { return t.kind == globLiteral }) {
		return nil
	}
	var actions []string
	for _, a := range Actions {
		if actionCovers(p.action, a) {
			actions = append(actions, a)
		}
	}
	var first error
	var firstWitness string
	for _, fill := range []string{"x", "1"} {
		leads := []string{fill}
		if p.glob[0].kind != globLiteral {
			leads = append(leads, "/"+fill, "x:///"+fill)
		}
		for _, lead := range leads {
			w := p.witness(lead, fill)
			for _, a := range actions {
				err := resource.Check(a, w)
				if err == nil {
					return nil
				}
				if first == nil {
					first, firstWitness = err, w
				}
			}
		}
	}
	// Name the pattern in the reason, not the witness it was checked by.
	return fmt.Errorf("%w%s", resource.ErrNotCanonical, strings.Replace(
		strings.TrimPrefix(first.Error(), resource.ErrNotCanonical.Error()), resource.Quote(firstWitness), resource.Quote(p.resource), 1))
}

// witness is the pattern's resource with its first token, when it is a
// wildcard, replaced by lead, and every other wildcard by fill.
func (p Pattern) witness(lead, fill string) string {
	var b strings.Builder
	for i, t := range p.glob {
		switch {
		case t.kind == globLiteral:
			b.WriteByte(t.lit)
		case i == 0:
			b.WriteString(lead)
		default:
			b.WriteString(fill)
		}
	}
	return b.String()
}

func validActionPattern(a string) bool {
	if a == "*" || slices.Contains(Actions, a) {
		return true
	}
	family, ok := strings.CutSuffix(a, ".*")
	if !ok {
		return false
	}
	for _, known := range Actions {
		if strings.HasPrefix(known, family+".") {
			return true
		}
	}
	return false
}

// String returns the pattern in its canonical "ACTION:RESOURCE" form.
func (p Pattern) String() string { return p.action + ":" + p.resource }

// Action returns the pattern's action part.
func (p Pattern) Action() string { return p.action }

// Resource returns the pattern's resource glob.
func (p Pattern) Resource() string { return p.resource }

// Matches reports whether the pattern permits action on resource. It runs in
// time linear in the resource's length (times the pattern's) and does not
// allocate.
//
// A resource with a "." or ".." segment, an empty segment ("//"), a
// percent-encoded dot or slash, or a NUL byte never matches: a wildcard
// must not climb out of the pattern's root. (package access refuses such
// resources before they get here; this keeps Matches safe on its own.)
func (p Pattern) Matches(action, res string) bool {
	return actionCovers(p.action, action) && len(p.glob) > 0 && !resource.Traverses(res) && globMatches(p.glob, res)
}

// globStates is the number of words of a bit set with a bit for every
// position in a glob (MaxPatternLen tokens at most, and the end).
const globStates = (MaxPatternLen + 1 + 63) / 64

// globMatches reports whether s is in the language of glob. It simulates
// the glob as an NFA whose states are the positions in glob: a literal
// consumes its byte, "*" any byte but '/', "**" any byte at all (a
// newline too: "**" must cover everything "*" matches, or Covers would
// allow a delegation wider than its parent), and a wildcard may also
// match nothing. Patterns are ASCII, so matching bytes
// rather than runes makes no difference.
//
// Patterns used to be compiled to regular expressions; a compiled
// regexp costs kilobytes, and every active task holds its scope's.
func globMatches(glob []globToken, s string) bool {
	var cur, next [globStates]uint64
	has := func(b *[globStates]uint64, i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
	add := func(b *[globStates]uint64, i int) {
		// A wildcard may match nothing: reaching it reaches what follows.
		for ; ; i++ {
			b[i/64] |= 1 << (i % 64)
			if i == len(glob) || glob[i].kind == globLiteral {
				return
			}
		}
	}
	add(&cur, 0)
	for k := 0; k < len(s); k++ {
		c := s[k]
		next = [globStates]uint64{}
		alive := false
		for i, t := range glob {
			if !has(&cur, i) {
				continue
			}
			switch t.kind {
			case globLiteral:
				if t.lit == c {
					add(&next, i+1)
					alive = true
				}
			case globStar:
				if c != '/' {
					add(&next, i)
					alive = true
				}
			case globDoubleStar:
				add(&next, i)
				alive = true
			}
		}
		if !alive {
			return false
		}
		cur = next
	}
	return has(&cur, len(glob))
}

// Covers reports whether every (action, resource) that q matches is also
// matched by p: whether q is a narrowing of p. The check is sound (it never
// says yes wrongly) and exact for the patterns people write; in rare
// contrived cases it may refuse a narrowing that is technically valid, which
// errs on the side of refusing delegation.
func (p Pattern) Covers(q Pattern) bool {
	return actionCovers(p.action, q.action) && globCovers(p.glob, q.glob)
}

func actionCovers(outer, inner string) bool {
	if outer == "*" || outer == inner {
		return true
	}
	family, ok := strings.CutSuffix(outer, ".*")
	return ok && inner != "*" && strings.HasPrefix(inner, family+".")
}

// globCovers decides L(inner) ⊆ L(outer) by simulating outer over inner's
// tokens: a literal must meet the same literal; "*" absorbs literals other
// than "/" and inner "*"s; "**" absorbs anything. Memoized, so the cost is
// O(len(outer) × len(inner)).
func globCovers(outer, inner []globToken) bool {
	width := len(inner) + 1
	memo := make([]int8, (len(outer)+1)*width) // 0 unknown, 1 yes, 2 no
	var covers func(i, j int) bool
	covers = func(i, j int) bool {
		m := &memo[i*width+j]
		if *m != 0 {
			return *m == 1
		}
		var ok bool
		switch {
		case j == len(inner):
			ok = true
			for _, t := range outer[i:] {
				if t.kind == globLiteral {
					ok = false
					break
				}
			}
		case i == len(outer):
			ok = false
		default:
			o, n := outer[i], inner[j]
			switch o.kind {
			case globLiteral:
				ok = n.kind == globLiteral && n.lit == o.lit && covers(i+1, j+1)
			case globStar:
				ok = covers(i+1, j) ||
					(n.kind == globStar || n.kind == globLiteral && n.lit != '/') && covers(i, j+1)
			case globDoubleStar:
				ok = covers(i+1, j) || covers(i, j+1)
			}
		}
		*m = 2
		if ok {
			*m = 1
		}
		return ok
	}
	return covers(0, 0)
}

// Scope is a set of patterns; it permits what any of them permits.
type Scope []Pattern

// ParseScope parses a space-separated OAuth scope string of patterns.
func ParseScope(s string) (Scope, error) {
	return ParseScopeList(strings.Fields(s))
}

// ParseScopeList parses a list of patterns, dropping exact duplicates.
func ParseScopeList(entries []string) (Scope, error) {
	if len(entries) > MaxScopePatterns {
		return nil, fmt.Errorf("%w: at most %d scope patterns", ErrInvalid, MaxScopePatterns)
	}
	var sc Scope
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		p, err := ParsePattern(e)
		if err != nil {
			return nil, err
		}
		if !seen[p.String()] {
			seen[p.String()] = true
			sc = append(sc, p)
		}
	}
	return sc, nil
}

// Allows reports whether some pattern permits action on resource.
func (sc Scope) Allows(action, resource string) bool {
	for _, p := range sc {
		if p.Matches(action, resource) {
			return true
		}
	}
	return false
}

// Covers reports whether every pattern of narrower is covered by some
// pattern of sc: whether narrower permits nothing sc does not. Patterns are
// compared by what they match, not by how they are spelled, so
// "task.delegate", "task.delegate:**" and "*" with the same meaning are
// treated alike.
func (sc Scope) Covers(narrower Scope) bool {
	_, ok := sc.Uncovered(narrower)
	return ok
}

// Uncovered returns the first pattern of narrower that no pattern of sc
// covers, and false; or the zero Pattern and true when sc covers all of
// narrower.
func (sc Scope) Uncovered(narrower Scope) (Pattern, bool) {
	for _, q := range narrower {
		if !slices.ContainsFunc(sc, func(p Pattern) bool { return p.Covers(q) }) {
			return q, false
		}
	}
	return Pattern{}, true
}

// String returns the scope as a space-separated OAuth scope string.
func (sc Scope) String() string {
	parts := make([]string, len(sc))
	for i, p := range sc {
		parts[i] = p.String()
	}
	return strings.Join(parts, " ")
}

// Strings returns the patterns' canonical forms.
func (sc Scope) Strings() []string {
	if sc == nil {
		return nil
	}
	return strings.Fields(sc.String())
}

// MarshalJSON encodes the scope as a list of pattern strings.
func (sc Scope) MarshalJSON() ([]byte, error) {
	return json.Marshal(sc.Strings())
}

// UnmarshalJSON decodes a list of pattern strings.
func (sc *Scope) UnmarshalJSON(b []byte) error {
	var entries []string
	if err := json.Unmarshal(b, &entries); err != nil {
		return fmt.Errorf("%w: scope must be a list of patterns", ErrInvalid)
	}
	parsed, err := ParseScopeList(entries)
	if err != nil {
		return err
	}
	*sc = parsed
	return nil
}
