package policy

import (
	"errors"
	"testing"
	"time"
)

// FuzzCompile: the policy loader never panics; whatever it accepts decides
// any request without panicking; whatever it refuses is a CompileError
// with locations.
func FuzzCompile(f *testing.F) {
	for _, s := range DefaultSources() {
		f.Add(string(s.Text))
	}
	for _, s := range []string{
		`permit(principal, action, resource);`,
		`@id("x") @approval("a") forbid(principal, action in [Action::"file.read", Action::"file.write"], resource == File::"/x") when { context.taint_level > 1 };`,
		`permit(principal, action, resource) when { context.task.depth + 9223372036854775807 > 0 };`,
		`permit(principal, action, resource) when { context == {} };`,
		`forbid(principal, action, resource) unless { resource in Server::"s" && principal.hasTag("t") && principal.getTag("t") like "a*" };`,
		`permit(principal is Agent, action, resource is Tool) when { context.time > datetime("2026-01-01") };`,
		`@id("a") permit(principal, action, resource); @id("a") permit(principal, action, resource);`,
		"permit(principal, action,\n",
		`@approval permit(principal, action, resource);`,
	} {
		f.Add(s)
	}
	reqs := []*Request{
		baseRequest(TierAutonomous, ActionFileRead, RiskRead, true),
		baseRequest(TierAssist, ActionToolCall, RiskDestructive, false),
		baseRequest(TierSupervised, ActionTaskDelegate, RiskWrite, true),
		baseRequest(TierAutonomous, ActionHTTPRequest, RiskExternal, true),
	}
	f.Fuzz(func(t *testing.T, text string) {
		set, err := Compile([]Source{{Name: "f.cedar", Text: []byte(text)}})
		if err != nil {
			var ce *CompileError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Compile error %v is not a CompileError with problems", err)
			}
			for _, p := range ce.Problems {
				if p.File != "f.cedar" || p.Line < 1 || p.Column < 1 {
					t.Fatalf("problem without a location: %+v", p)
				}
			}
			return
		}
		for _, r := range reqs {
			d, err := set.Decide(r, time.Time{})
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Effect != Allow && d.Effect != Deny && d.Effect != ApprovalRequired {
				t.Fatalf("Decide = %q", d.Effect)
			}
			if len(d.Errors) > 0 && d.Effect != Deny {
				t.Fatalf("an erroring policy did not deny: %+v", d)
			}
		}
	})
}

// FuzzDecodeRequest: the request decoder never panics, and a request it
// accepts is decided (never with an error).
func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"agent":{"id":"spiffe://x/agent/a","tier":"assist"},"action":"file.read","resource":{"id":"/a"},"risk":"read","task":{"id":"t","in_scope":true}}`)
	f.Add(`{"agent":{"id":"a","tier":"autonomous","labels":{"team":"x"}},"action":"task.delegate","resource":{"id":"b","tier":"assist"},"risk":"write","task":{"id":"t","in_scope":true,"depth":2,"chain":["r","a"],"actions_left":0},"taint":"restricted","approvals":["step-up"],"time":"2026-01-01T00:00:00Z"}`)
	f.Add(`{"agent":{"id":"a","tier":"god"}}`)
	f.Add(`{"action":"http.request","destination":{"host":"h","method":"POST","path":"/"},"unknown":1}`)
	f.Add(`[[[[[[[[[[[[[[[[[[`)
	set := mustDefaults(f)
	f.Fuzz(func(t *testing.T, body string) {
		r, err := DecodeRequestJSON([]byte(body))
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("decode error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if _, err := set.Decide(r, TestTime); err != nil {
			t.Fatalf("Decide(valid request) = %v", err)
		}
	})
}
