package secrets_test

import (
	"errors"
	"testing"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/secrets"
)

// LeaseForHost leases only secrets delivered to the host asked for,
// checking all before leasing any, and reuses the task's active lease.
func TestLeaseForHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	e.put(t, "github-token", ghValue) // delivered to api.github.com
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token", "other")
	if _, _, err := e.broker.Put(ctx, "admin:test", secrets.PutRequest{Name: "other", Value: []byte("other-value-123"),
		Deliver: []secrets.Target{{Host: "evil.example"}}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		host  string
		names []secrets.Name
	}{
		{"evil.example", []secrets.Name{"github-token"}},
		{"api.github.com:8443", []secrets.Name{"github-token"}},
		{"api.github.com", []secrets.Name{"github-token", "other"}},
		{"api.github.com", []secrets.Name{"nope"}},
	} {
		if _, err := e.broker.LeaseForHost(ctx, tk.ID, tc.host, tc.names); !errors.Is(err, secrets.ErrNotDeliverable) {
			t.Errorf("LeaseForHost(%s, %v) = %v, want ErrNotDeliverable", tc.host, tc.names, err)
		}
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseIssued)); n != 0 {
		t.Fatalf("%d leases issued for refused hosts, want 0", n)
	}

	ds, err := e.broker.LeaseForHost(ctx, tk.ID, "api.github.com", []secrets.Name{"github-token"})
	if err != nil || len(ds) != 1 || string(ds[0].Value.Bytes()) != ghValue || ds[0].Target.Host != "api.github.com" {
		t.Fatalf("LeaseForHost = %+v, %v; want one delivery of github-token", ds, err)
	}
	again, err := e.broker.LeaseForHost(ctx, tk.ID, "api.github.com", []secrets.Name{"github-token"})
	if err != nil || len(again) != 1 || again[0].Lease.ID != ds[0].Lease.ID {
		t.Fatalf("second LeaseForHost = %+v, %v; want the same lease reused", again, err)
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseIssued)); n != 1 {
		t.Errorf("%d leases issued, want 1", n)
	}
}
