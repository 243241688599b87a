package task

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mandatehq/mandate/internal/identity"
)

func entitlement(t *testing.T, scope string, sens Sensitivity, ttl time.Duration) *Entitlement {
	t.Helper()
	e := &Entitlement{Scope: mustScope(t, scope), MaxSensitivity: sens, MaxTaskTTL: ttl}
	if err := e.Validate(); err != nil {
		t.Fatalf("Validate(%s) = %v", scope, err)
	}
	return e
}

func rootTask(t *testing.T, scope string, sens Sensitivity, life time.Duration) *Task {
	t.Helper()
	return &Task{
		ID: NewID(), Agent: agentA, OnBehalfOf: "alice", Principal: "alice", Purpose: "p",
		Scope: mustScope(t, scope), Sensitivity: sens, Actors: []identity.ID{agentA},
		Status: StatusActive, CreatedAt: t0, ExpiresAt: t0.Add(life),
	}
}

// TestEntitlementAdmitsScope tries to get a wider scope past an
// entitlement by spelling it differently: every one must be refused, and
// the real narrowings admitted.
func TestEntitlementAdmitsScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, entitled, asked string
		want                  bool
	}{
		{"same", "file.read:/repo/**", "file.read:/repo/**", true},
		{"narrower dir", "file.read:/repo/**", "file.read:/repo/src/**", true},
		{"one segment inside recursive", "file.read:/repo/**", "file.read:/repo/*", true},
		{"recursive is not within one segment", "tool.call:github/*", "tool.call:github/**", false},
		{"double star past a slash", "file.read:/repo/*", "file.read:/repo/*/**", false},
		{"the root itself is not under it", "file.read:/repo/**", "file.read:/repo", false},
		{"sibling with the same prefix", "file.read:/repo/**", "file.read:/repository/**", false},
		{"glob over the separator", "file.read:/repo/**", "file.read:/repo*", false},
		{"case of the resource", "file.read:/repo/**", "file.read:/Repo/**", false},
		{"wider action family", "file.read:/repo/**", "file.*:/repo/**", false},
		{"any action", "file.read:/repo/**", "*:/repo/**", false},
		{"star", "file.read:/repo/**", "*", false},
		{"star star", "file.read:/repo/**", "*:**", false},
		{"star spelled long is star", "*", "*:**", true},
		{"star long covers star", "*:**", "*", true},
		{"family covers its member", "file.*:/repo/**", "file.write:/repo/a", true},
		{"family does not cover another family", "file.*:**", "shell.exec:ls", false},
		{"bare action means every resource", "task.delegate:**", "task.delegate", true},
		{"bare action is wider than a resource", "task.delegate:spiffe://example.org/agent/*", "task.delegate", false},
		{"one pattern of several outside", "file.read:/repo/**", "file.read:/repo/a file.write:/repo/a", false},
		{"several inside several", "file.read:/repo/** tool.call:go/*", "tool.call:go/test file.read:/repo/x", true},
		{"host suffix", "http.request:api.github.com", "http.request:api.github.com.evil.test", false},
		{"host wildcard", "http.request:api.github.com", "http.request:*", false},
		{"subdomain wildcard", "http.request:*.github.com", "http.request:*.com", false},
		{"host port", "http.request:api.github.com", "http.request:api.github.com:8443", false},
		{"tool prefix", "tool.call:github/create_*", "tool.call:github/create_issue", true},
		{"tool wider prefix", "tool.call:github/create_*", "tool.call:github/*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := entitlement(t, tt.entitled, SensitivityRestricted, time.Hour)
			err := e.Admits(rootTask(t, tt.asked, SensitivityPublic, time.Minute))
			if got := err == nil; got != tt.want {
				t.Fatalf("Entitlement{%s}.Admits(%s) = %v, want admitted=%v", tt.entitled, tt.asked, err, tt.want)
			}
			if err == nil {
				return
			}
			var ex *ExceedsError
			if !errors.As(err, &ex) || ex.Limit != LimitScope || !errors.Is(err, ErrNotEntitled) {
				t.Fatalf("Admits error = %#v, want an ExceedsError on scope wrapping ErrNotEntitled", err)
			}
		})
	}
}

// TestScopeSpellingsRefusedAtParse: spellings that would climb out of an
// entitled root, or differ only in case of the action, never become
// patterns at all.
func TestScopeSpellingsRefusedAtParse(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"file.read:/repo/../etc/**", "file.read:/repo/./x", "file.read:/repo//x",
		"file.read:/repo/%2e%2e/etc", "file.read:/repo/%2fetc", "FILE.READ:/repo/**",
		"File.read:/repo/**", "file.read:/repo/***", "file.read:/repo/\\..\\x", "file:/repo/**",
		// Spellings that would make a wider pattern look narrower are not
		// patterns at all (their canonical rules are package resource's).
		"file.read:/repo/", "http.request:API.github.com", "http.request:https://api.github.com/**",
	} {
		if _, err := ParsePattern(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePattern(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestEntitlementAdmitsSensitivityAndLifetime(t *testing.T) {
	t.Parallel()
	e := entitlement(t, "*", SensitivityInternal, 8*time.Hour)
	tests := []struct {
		name  string
		sens  Sensitivity
		life  time.Duration
		limit string // "" admitted
	}{
		{"below both", SensitivityPublic, time.Hour, ""},
		{"at both", SensitivityInternal, 8 * time.Hour, ""},
		{"sensitivity above", SensitivityConfidential, time.Hour, LimitSensitivity},
		{"highest sensitivity", SensitivityRestricted, time.Hour, LimitSensitivity},
		{"unknown sensitivity ranks above all", Sensitivity("secret"), time.Hour, LimitSensitivity},
		{"a nanosecond too long", SensitivityPublic, 8*time.Hour + time.Nanosecond, LimitLifetime},
		{"much too long", SensitivityPublic, 30 * 24 * time.Hour, LimitLifetime},
	}
	for _, tt := range tests {
		err := e.Admits(rootTask(t, "file.read:/x", tt.sens, tt.life))
		var ex *ExceedsError
		switch {
		case tt.limit == "" && err != nil:
			t.Errorf("%s: Admits = %v, want admitted", tt.name, err)
		case tt.limit != "" && (!errors.As(err, &ex) || ex.Limit != tt.limit):
			t.Errorf("%s: Admits = %v, want ExceedsError{%s}", tt.name, err, tt.limit)
		}
	}
}

func TestNoEntitlementAdmitsNothing(t *testing.T) {
	t.Parallel()
	var e *Entitlement
	if err := e.Admits(rootTask(t, "file.read:/x", SensitivityPublic, time.Minute)); !errors.Is(err, ErrNoEntitlement) {
		t.Fatalf("nil.Admits = %v, want ErrNoEntitlement", err)
	}
	empty := entitlement(t, "*", SensitivityRestricted, time.Hour)
	noScope := rootTask(t, "file.read:/x", SensitivityPublic, time.Minute)
	noScope.Scope = nil
	if err := empty.Admits(noScope); !errors.Is(err, ErrNotEntitled) {
		t.Fatalf("Admits(task without scope) = %v, want ErrNotEntitled", err)
	}
}

func TestEntitlementValidate(t *testing.T) {
	t.Parallel()
	p := mustPattern(t, "file.read:/repo/**")
	tests := []struct {
		name string
		e    *Entitlement
	}{
		{"nil", nil},
		{"no scope", &Entitlement{MaxSensitivity: SensitivityPublic, MaxTaskTTL: time.Hour}},
		{"duplicate pattern", &Entitlement{Scope: Scope{p, p}, MaxSensitivity: SensitivityPublic, MaxTaskTTL: time.Hour}},
		{"zero pattern", &Entitlement{Scope: Scope{{}}, MaxSensitivity: SensitivityPublic, MaxTaskTTL: time.Hour}},
		{"no sensitivity", &Entitlement{Scope: Scope{p}, MaxTaskTTL: time.Hour}},
		{"unknown sensitivity", &Entitlement{Scope: Scope{p}, MaxSensitivity: "Internal", MaxTaskTTL: time.Hour}},
		{"no ttl", &Entitlement{Scope: Scope{p}, MaxSensitivity: SensitivityPublic}},
		{"negative ttl", &Entitlement{Scope: Scope{p}, MaxSensitivity: SensitivityPublic, MaxTaskTTL: -time.Hour}},
		{"fractional seconds", &Entitlement{Scope: Scope{p}, MaxSensitivity: SensitivityPublic, MaxTaskTTL: 1500 * time.Millisecond}},
		{"longer than a year", &Entitlement{Scope: Scope{p}, MaxSensitivity: SensitivityPublic, MaxTaskTTL: MaxEntitlementTTL + time.Second}},
	}
	for _, tt := range tests {
		if err := tt.e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", tt.name, err)
		}
	}
	ok := &Entitlement{Scope: Scope{p}, MaxSensitivity: SensitivityConfidential, MaxTaskTTL: MaxEntitlementTTL}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
}

func TestEntitlementJSON(t *testing.T) {
	t.Parallel()
	e := entitlement(t, "file.read:/repo/** task.delegate", SensitivityInternal, 8*time.Hour)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"scope":["file.read:/repo/**","task.delegate:**"],"max_sensitivity":"internal","max_task_ttl":"8h0m0s"}`
	if string(b) != want {
		t.Fatalf("Marshal = %s, want %s", b, want)
	}
	var back Entitlement
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e.Scope.Strings(), back.Scope.Strings()); diff != "" || back.MaxSensitivity != e.MaxSensitivity || back.MaxTaskTTL != e.MaxTaskTTL {
		t.Fatalf("round trip = %+v (%s), want %+v", back, diff, e)
	}
	for _, in := range []string{
		`{"scope":["file.read:/x"],"max_sensitivity":"public"}`,
		`{"scope":["file.read:/x"],"max_task_ttl":"1h"}`,
		`{"max_sensitivity":"public","max_task_ttl":"1h"}`,
		`{"scope":[],"max_sensitivity":"public","max_task_ttl":"1h"}`,
		`{"scope":["file.read:/x"],"max_sensitivity":"public","max_task_ttl":"8 hours"}`,
		`{"scope":["file.read:/x"],"max_sensitivity":"public","max_task_ttl":"1h","max_budget":3}`,
		`{"scope":["file.read:/../x"],"max_sensitivity":"public","max_task_ttl":"1h"}`,
		`{"scope":"file.read:/x","max_sensitivity":"public","max_task_ttl":"1h"}`,
		`[]`,
	} {
		var got Entitlement
		if err := json.Unmarshal([]byte(in), &got); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unmarshal(%s) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestScopeUncovered(t *testing.T) {
	t.Parallel()
	sc := mustScope(t, "file.read:/repo/** tool.call:go/*")
	q, ok := sc.Uncovered(mustScope(t, "file.read:/repo/a tool.call:rm/rf"))
	if ok || q.String() != "tool.call:rm/rf" {
		t.Fatalf("Uncovered = %s, %v; want the shell.exec pattern", q, ok)
	}
	if _, ok := sc.Uncovered(mustScope(t, "file.read:/repo/a")); !ok {
		t.Fatal("Uncovered reports a covered scope")
	}
}

// FuzzEntitlementJSON checks that decoding never panics and that a valid
// entitlement round-trips through its JSON form unchanged and still valid.
func FuzzEntitlementJSON(f *testing.F) {
	for _, s := range []string{
		`{"scope":["file.read:/repo/**","task.delegate"],"max_sensitivity":"internal","max_task_ttl":"8h"}`,
		`{"scope":["*"],"max_sensitivity":"restricted","max_task_ttl":"8784h"}`,
		`{"scope":["file.read:/x"],"max_sensitivity":"public","max_task_ttl":"1.5s"}`,
		`{"scope":["file.read:/x","file.read:/x"],"max_sensitivity":"public","max_task_ttl":"1h"}`,
		`{"scope":null,"max_sensitivity":"","max_task_ttl":""}`, `null`, `{}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var e Entitlement
		if json.Unmarshal([]byte(in), &e) != nil || e.Validate() != nil {
			return
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back Entitlement
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(Marshal(%s)) = %v", in, err)
		}
		if back.Scope.String() != e.Scope.String() || back.MaxSensitivity != e.MaxSensitivity || back.MaxTaskTTL != e.MaxTaskTTL || back.Validate() != nil {
			t.Fatalf("%s round-trips to %s", in, b)
		}
	})
}
