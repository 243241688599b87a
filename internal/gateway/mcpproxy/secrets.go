package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Credentials supply the secrets an upstream needs, leased to the task of
// the session that connects it (the secrets broker, whose leases are
// decided by the one pipeline as secret.use): a session's upstream
// process or connection carries its own task's credentials, so two tasks
// never share one.
type Credentials interface {
	// For returns what to deliver to upstream for p's task. An error
	// refuses the connection: an upstream that cannot have its
	// credentials is not started without them.
	For(ctx context.Context, p *Principal, upstream string) (Injection, error)
}

// Injection is what an upstream connection is given.
type Injection struct {
	// Env holds NAME=value entries added to a stdio upstream's
	// environment (over the configured ones of the same name).
	Env []string
	// Headers are added to every request to an HTTP upstream (over the
	// configured ones).
	Headers map[string]string
	// Secrets maps each value delivered to its secret's name: what the
	// gateway removes from everything it relays to the client.
	Secrets map[string]string
	// Until is when the first of the leases ends: the upstream session
	// is closed then, and the next call connects it again with the
	// leases then in force (zero: none ends before the task).
	Until time.Time
}

// errWithheld refuses to relay what held a delivered secret the gateway
// could not remove.
var errWithheld = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the upstream's message held a secret delivered to it, which the gateway could not remove: withheld"}

// minScrubbed is the shortest value the gateway searches relayed messages
// for: a shorter one would match ordinary text (and is no credential).
const minScrubbed = 8

// inject applies inj to the connection about to be made, and remembers
// its values for the session's scrubber.
func (u *upConn) inject(ctx context.Context) (Injection, error) {
	creds := u.s.gw.cfg.Credentials
	if creds == nil {
		return Injection{}, nil
	}
	u.s.mu.Lock()
	p := u.s.principal
	u.s.mu.Unlock()
	if p == nil {
		return Injection{}, fmt.Errorf("no principal to lease %q's credentials for", u.cfg.Name)
	}
	inj, err := creds.For(ctx, p, u.cfg.Name)
	if err != nil {
		return Injection{}, fmt.Errorf("credentials: %w", err)
	}
	u.s.scrub.add(inj.Secrets)
	return inj, nil
}

// expireAt closes the upstream session cs when its leases end, so that
// no process or connection outlives the credentials it was given.
func (u *upConn) expireAt(cs interface{ Close() error }, until time.Time) {
	if until.IsZero() {
		return
	}
	t := time.AfterFunc(time.Until(until), func() {
		u.mu.Lock()
		current := u.cs == cs
		if current {
			u.cs = nil
		}
		u.mu.Unlock()
		if current {
			u.s.gw.log.Info("upstream session closed: its credentials' lease ended", "upstream", u.cfg.Name)
			_ = cs.Close()
		}
	})
	context.AfterFunc(u.s.gw.ctx, func() { t.Stop() })
}

// withEnv returns env with entries replacing those of the same name.
func withEnv(env, entries []string) []string {
	if len(entries) == 0 {
		return env
	}
	out := slices.Clone(env)
	for _, e := range entries {
		name, _, _ := strings.Cut(e, "=")
		out = slices.DeleteFunc(out, func(x string) bool { return strings.HasPrefix(x, name+"=") })
		out = append(out, e)
	}
	return out
}

// scrubber removes a session's delivered secret values from what the
// gateway relays to its client, replacing each with a placeholder naming
// the secret: an upstream that echoes its credentials (in a result, an
// error, a log message) shows the agent where a secret was, never the
// secret.
type scrubber struct {
	mu sync.RWMutex
	// forms are the byte strings searched for: each value as it is and
	// as JSON encodes it inside a string.
	forms [][]byte
	names [][]byte // the placeholder of forms[i]
}

func (sc *scrubber) add(secrets map[string]string) {
	if len(secrets) == 0 {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for v, name := range secrets {
		if len(v) < minScrubbed {
			continue
		}
		enc, _ := json.Marshal(v)
		placeholder := []byte("[secret:" + name + "]")
		for _, f := range [][]byte{[]byte(v), enc[1 : len(enc)-1]} {
			if !slices.ContainsFunc(sc.forms, func(x []byte) bool { return bytes.Equal(x, f) }) {
				sc.forms = append(sc.forms, f)
				sc.names = append(sc.names, placeholder)
			}
		}
	}
}

func (sc *scrubber) active() bool {
	if sc == nil {
		return false
	}
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return len(sc.forms) > 0
}

// json returns the JSON message b with every secret value replaced. A
// message that replacing would leave malformed (a value that crossed the
// JSON's own structure) is refused: ok false.
func (sc *scrubber) json(b []byte) (_ []byte, ok bool) {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	changed := false
	for i, f := range sc.forms {
		if bytes.Contains(b, f) {
			b = bytes.ReplaceAll(b, f, sc.names[i])
			changed = true
		}
	}
	if changed && !json.Valid(b) {
		return nil, false
	}
	return b, true
}

// scrubbed returns the SDK path's answer (res, err) without the session's
// secret values: a result is re-encoded without them (a fresh value of
// its type), an error's message cleaned; one that cannot be cleaned is
// withheld with an error saying so.
func (sc *scrubber) scrubbed(res mcp.Result, err error) (mcp.Result, error) {
	if !sc.active() {
		return res, err
	}
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		msg, _ := json.Marshal(je.Message)
		if clean, ok := sc.json(msg); ok {
			var m string
			if json.Unmarshal(clean, &m) == nil && m != je.Message {
				cp := *je
				cp.Message = m
				return nil, &cp
			}
		}
	}
	if res == nil || reflect.ValueOf(res).Kind() != reflect.Pointer {
		return res, err
	}
	b, merr := json.Marshal(res)
	if merr != nil {
		return res, err
	}
	clean, ok := sc.json(b)
	if ok && bytes.Equal(clean, b) {
		return res, err
	}
	out := reflect.New(reflect.TypeOf(res).Elem()).Interface().(mcp.Result)
	if !ok || json.Unmarshal(clean, out) != nil {
		return nil, errWithheld
	}
	return out, err
}

// cleanParams returns p, what the gateway relays to the client on the SDK
// path (a notification's or a request's params), without the session's
// secret values; ok false when they cannot be removed (the message is
// then not relayed).
func cleanParams[P any](sc *scrubber, p *P) (_ *P, ok bool) {
	if p == nil || !sc.active() {
		return p, true
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, false
	}
	clean, ok := sc.json(b)
	if !ok {
		return nil, false
	}
	if bytes.Equal(clean, b) {
		return p, true
	}
	out := new(P)
	if json.Unmarshal(clean, out) != nil {
		return nil, false
	}
	return out, true
}
