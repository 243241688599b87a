package token

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// memStore is an in-memory token.Store, identity.Store and task.Store for
// this package's unit tests (domain packages never import backends).
type memStore struct {
	mu          sync.Mutex
	keys        []SigningKey
	used        map[string]time.Time
	revoked     map[string]time.Time
	agents      map[identity.ID]*identity.Agent
	tasks       map[task.ID]*task.Task
	ents        map[identity.ID]*task.Entitlement
	failUseOnce error
}

var (
	_ Store                 = (*memStore)(nil)
	_ identity.Store        = (*memStore)(nil)
	_ task.Store            = (*memStore)(nil)
	_ task.EntitlementStore = (*memStore)(nil)
)

func newMemStore() *memStore {
	return &memStore{
		used:    map[string]time.Time{},
		revoked: map[string]time.Time{},
		agents:  map[identity.ID]*identity.Agent{},
		tasks:   map[task.ID]*task.Task{},
		ents:    map[identity.ID]*task.Entitlement{},
	}
}

func (m *memStore) GetEntitlement(_ context.Context, id identity.ID) (*task.Entitlement, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.agents[id]; !ok {
		return nil, identity.ErrNotFound
	}
	e, ok := m.ents[id]
	if !ok {
		return nil, task.ErrNoEntitlement
	}
	c := *e
	return &c, nil
}

func (m *memStore) SetEntitlement(_ context.Context, id identity.ID, e *task.Entitlement, _ time.Time) (*task.Entitlement, error) {
	if e != nil {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.agents[id]; !ok {
		return nil, identity.ErrNotFound
	}
	prev := m.ents[id]
	if e == nil {
		delete(m.ents, id)
	} else {
		c := *e
		m.ents[id] = &c
	}
	return prev, nil
}

func (m *memStore) AddSigningKey(_ context.Context, k SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.keys {
		if e.KID == k.KID {
			return ErrKeyExists
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

func (m *memStore) RetireSigningKey(_ context.Context, kid string, retiredAt, publishUntil time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].KID == kid {
			m.keys[i].RetiredAt, m.keys[i].PublishUntil = retiredAt, publishUntil
			return nil
		}
	}
	return errors.New("no such key")
}

func (m *memStore) SigningKeys(_ context.Context, now time.Time) ([]SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SigningKey
	for _, k := range m.keys {
		if k.PublishUntil.IsZero() || k.PublishUntil.After(now) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (m *memStore) DeleteSigningKeys(_ context.Context, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = slices.DeleteFunc(m.keys, func(k SigningKey) bool {
		return !k.PublishUntil.IsZero() && !k.PublishUntil.After(now)
	})
	return nil
}

func (m *memStore) ResealSigningKey(_ context.Context, kid string, old, sealed, pub []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].KID == kid && bytes.Equal(m.keys[i].SealedKey, old) {
			m.keys[i].SealedKey, m.keys[i].PublicJWK = bytes.Clone(sealed), bytes.Clone(pub)
			return nil
		}
	}
	return ErrKeyChanged
}

func (m *memStore) UseOnce(_ context.Context, ns, id string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failUseOnce != nil {
		return m.failUseOnce
	}
	k := ns + "\x00" + id
	if _, ok := m.used[k]; ok {
		return ErrReplay
	}
	m.used[k] = exp
	return nil
}

func (m *memStore) PruneUsed(_ context.Context, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, exp := range m.used {
		if !exp.After(now) {
			delete(m.used, k)
		}
	}
	return nil
}

func (m *memStore) RevokeToken(_ context.Context, jti string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revoked[jti] = exp
	return nil
}

func (m *memStore) RevokedTokens(_ context.Context, now time.Time) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for j, exp := range m.revoked {
		if exp.After(now) {
			out = append(out, j)
		}
	}
	return out, nil
}

func (m *memStore) CreateAgent(_ context.Context, a *identity.Agent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.agents[a.ID]; ok {
		return identity.ErrExists
	}
	c := *a
	m.agents[a.ID] = &c
	return nil
}

func (m *memStore) GetAgent(_ context.Context, id identity.ID) (*identity.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.agents[id]
	if !ok {
		return nil, identity.ErrNotFound
	}
	c := *a
	return &c, nil
}

func (m *memStore) FindFederated(_ context.Context, iss, sub string) (*identity.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.agents {
		for _, f := range a.Federations {
			if f.Issuer == iss && f.Subject == sub {
				c := *a
				return &c, nil
			}
		}
	}
	return nil, identity.ErrNotFound
}

func (m *memStore) ListAgents(_ context.Context, f identity.Filter) ([]*identity.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*identity.Agent
	for _, a := range m.agents {
		if f.Status == "" || a.Status == f.Status {
			c := *a
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.String() < out[j].ID.String() })
	return out, nil
}

func (m *memStore) SetAgentStatus(_ context.Context, id identity.ID, st identity.Status, at time.Time) (*identity.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.agents[id]
	if !ok {
		return nil, identity.ErrNotFound
	}
	a.Status, a.UpdatedAt = st, at
	c := *a
	return &c, nil
}

func (m *memStore) CreateTask(_ context.Context, t *task.Task) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tasks[t.ID]; ok {
		return task.ErrExists
	}
	if t.Parent != "" {
		p, ok := m.tasks[t.Parent]
		if !ok || p.Status != task.StatusActive {
			return task.ErrNotActive
		}
		t.Taint = higher(t.Taint, p.Taint)
	}
	if a, ok := m.agents[t.Agent]; ok {
		t.Taint = higher(t.Taint, task.Sensitivity(a.TaintAt(t.CreatedAt)))
	}
	c := *t
	m.tasks[t.ID] = &c
	return nil
}

func higher(a, b task.Sensitivity) task.Sensitivity {
	if a == "" || b != "" && b.Rank() > a.Rank() {
		return b
	}
	return a
}

func (m *memStore) RaiseTaint(_ context.Context, id task.ID, level task.Sensitivity, at, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tasks[id]; !ok {
		return task.ErrNotFound
	}
	for t := m.tasks[id]; t != nil; t = m.tasks[t.Parent] {
		t.Taint = higher(t.Taint, level)
		if a := m.agents[t.Agent]; a != nil {
			a.Taint = string(higher(task.Sensitivity(a.TaintAt(at)), level))
			if until.After(a.TaintUntil) {
				a.TaintUntil = until
			}
		}
	}
	return nil
}

func (m *memStore) GetTask(_ context.Context, id task.ID) (*task.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return nil, task.ErrNotFound
	}
	c := *t
	return &c, nil
}

func (m *memStore) ListTasks(_ context.Context, f task.Filter) ([]*task.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*task.Task
	for _, t := range m.tasks {
		if (f.Agent.IsZero() || t.Agent == f.Agent) && (f.Status == "" || t.Status == f.Status) && (f.Parent == "" || t.Parent == f.Parent) {
			c := *t
			out = append(out, &c)
		}
	}
	return out, nil
}

func (m *memStore) finishLocked(id task.ID, st task.Status, reason string, at time.Time) []task.ID {
	t := m.tasks[id]
	if t.Status != task.StatusActive {
		return nil
	}
	t.Status, t.StatusReason, t.EndedAt = st, reason, at
	ids := []task.ID{id}
	for _, c := range m.tasks {
		if c.Parent == id {
			ids = append(ids, m.finishLocked(c.ID, task.StatusRevoked, "parent finished", at)...)
		}
	}
	return ids
}

func (m *memStore) FinishTask(_ context.Context, id task.ID, st task.Status, reason string, at time.Time) ([]task.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return nil, task.ErrNotFound
	}
	if t.Status != task.StatusActive {
		return nil, task.ErrNotActive
	}
	return m.finishLocked(id, st, reason, at), nil
}

func (m *memStore) FinishAgentTasks(_ context.Context, agent identity.ID, st task.Status, reason string, at time.Time) ([]task.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []task.ID
	for _, t := range m.tasks {
		if t.Agent == agent && t.Status == task.StatusActive {
			ids = append(ids, m.finishLocked(t.ID, st, reason, at)...)
		}
	}
	return ids, nil
}

func (m *memStore) ExpireTasks(_ context.Context, now time.Time) ([]task.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []task.ID
	for _, t := range m.tasks {
		if t.Status == task.StatusActive && !t.ExpiresAt.After(now) {
			t.Status, t.EndedAt = task.StatusExpired, now
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}

func (m *memStore) InactiveTaskIDs(_ context.Context, now time.Time) ([]task.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []task.ID
	for _, t := range m.tasks {
		if t.Status != task.StatusActive && t.ExpiresAt.After(now) {
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}

func (m *memStore) UpdateAgentCredentials(_ context.Context, id identity.ID, at time.Time, update func(identity.Credentials) (identity.Credentials, error)) (*identity.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.agents[id]
	if !ok {
		return nil, identity.ErrNotFound
	}
	c, err := update(identity.Credentials{Keys: a.Keys, Federations: a.Federations})
	if err != nil {
		return nil, err
	}
	a.Keys, a.Federations, a.UpdatedAt = c.Keys, c.Federations, at
	cp := *a
	return &cp, nil
}

func (m *memStore) AddUsage(_ context.Context, deltas map[task.ID]task.Usage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, d := range deltas {
		if t, ok := m.tasks[id]; ok {
			t.Used.Actions += d.Actions
			t.Used.Writes += d.Writes
		}
	}
	return nil
}

// memRecorder is an audit.Recorder that keeps events and can be told to fail.
type memRecorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   error
}

var _ audit.Recorder = (*memRecorder)(nil)

func (r *memRecorder) Record(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, ev)
	return nil
}

func (r *memRecorder) take() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.events
	r.events = nil
	return evs
}

func (r *memRecorder) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recordingDecider stands in for the access pipeline (which imports this
// package) in the token server's unit tests: it records what it is asked
// and answers verdict and err (an allow by default). The pipeline's own
// decision of task.delegate is tested in package access and end to end.
type recordingDecider struct {
	mu      sync.Mutex
	asked   []DelegationRequest
	verdict *DelegationVerdict
	err     error
}

func (d *recordingDecider) DecideDelegation(_ context.Context, r DelegationRequest) (DelegationVerdict, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked = append(d.asked, r)
	if d.err != nil {
		return DelegationVerdict{}, d.err
	}
	if d.verdict != nil {
		return *d.verdict, nil
	}
	return DelegationVerdict{Allowed: true}, nil
}

func (d *recordingDecider) set(v *DelegationVerdict, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.verdict, d.err = v, err
}

func (d *recordingDecider) requests() []DelegationRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.asked)
}
