package audit_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
)

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := audit.NewRedactor([]byte("installation key"), []string{"Customer_SSN"})
	other := audit.NewRedactor([]byte("another installation"), nil)
	for _, tc := range []struct {
		name, in string
		// kept are substrings that must survive; gone must not.
		kept, gone []string
	}{
		{"plain arguments are kept", `{"path":"/repo/main.go","lines":[1,2]}`, []string{`"path":"/repo/main.go"`, `"lines":[1,2]`}, nil},
		{"secret-looking keys", `{"password":"hunter2","api_key":"k-123","Authorization":"x","nested":{"client_secret":"s"}}`,
			[]string{`"password":"hmac-sha256:`, `"api_key":"hmac-sha256:`, `"client_secret":"hmac-sha256:`}, []string{"hunter2", "k-123", `"s"`}},
		{"configured fields at any depth", `{"rows":[{"customer_ssn":"123-45-6789","name":"Ann"}]}`,
			[]string{`"name":"Ann"`, `"customer_ssn":"hmac-sha256:`}, []string{"123-45-6789"}},
		{"secret-looking values", `{"cmd":"curl -H 'x'","auth_header":"Bearer abc.def","jwt":"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln","aws":"AKIAABCDEFGHIJKLMNOP","gh":"ghp_0123456789abcdefghij0123","url":"https://bob:pw@example.com/x","pem":"-----BEGIN RSA PRIVATE KEY-----\nMII"}`,
			[]string{`"cmd":"curl -H 'x'"`}, []string{"Bearer abc", "eyJhbGci", "AKIAABCD", "ghp_0123", "bob:pw", "BEGIN RSA"}},
		{"a secret value whose key is not secret, in an array", `["ok","sk-abcdefghijklmnopqrstuvwx"]`, []string{`"ok"`}, []string{"sk-abc"}},
		{"object values are hashed whole", `{"credentials":{"user":"u","pass":"p"}}`, []string{`"credentials":"hmac-sha256:`}, []string{`"user"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := r.Redact([]byte(tc.in))
			if err != nil {
				t.Fatalf("Redact(%s) = %v", tc.in, err)
			}
			for _, k := range tc.kept {
				if !strings.Contains(string(got), k) {
					t.Errorf("Redact(%s) = %s, want it to contain %s", tc.in, got, k)
				}
			}
			for _, g := range tc.gone {
				if strings.Contains(string(got), g) {
					t.Errorf("Redact(%s) = %s, still contains %s", tc.in, got, g)
				}
			}
			if !json.Valid(got) {
				t.Errorf("Redact(%s) = %s, not JSON", tc.in, got)
			}
		})
	}
	// Equal values correlate within an installation, not across.
	a, _ := r.Redact([]byte(`{"token":"t1"}`))
	b, _ := r.Redact([]byte(`{"token":"t1"}`))
	c, _ := other.Redact([]byte(`{"token":"t1"}`))
	if string(a) != string(b) || string(a) == string(c) {
		t.Errorf("Redact(token) = %s, %s (same key) and %s (other key): want equal, then different", a, b, c)
	}
	// The digest is keyed and independent of key order and whitespace.
	d1, _ := r.Digest([]byte(`{"a":1,"b":[true,null]}`))
	d2, _ := r.Digest([]byte(`{ "b":[true, null], "a":1 }`))
	d3, _ := other.Digest([]byte(`{"a":1,"b":[true,null]}`))
	if d1 != d2 || d1 == d3 || !strings.HasPrefix(d1, audit.HMACPrefix) {
		t.Errorf("Digest() = %s, %s, %s: want the first two equal, the third different, all hmac-sha256:", d1, d2, d3)
	}
	// Arguments fills the digest always and the arguments only when asked.
	var ev audit.Event
	if err := r.Arguments(&ev, []byte(`{"password":"x","path":"/p"}`), false); err != nil || ev.ArgsDigest == "" || ev.Args != nil {
		t.Errorf("Arguments(full=false) = %v: digest %q args %s, want a digest only", err, ev.ArgsDigest, ev.Args)
	}
	if err := r.Arguments(&ev, []byte(`{"password":"x","path":"/p"}`), true); err != nil || strings.Contains(string(ev.Args), `"x"`) || !strings.Contains(string(ev.Args), `"/p"`) {
		t.Errorf("Arguments(full=true) = %v: args %s, want the path and a hashed password", err, ev.Args)
	}
	if _, err := r.Redact([]byte(`{"a":`)); err == nil {
		t.Error("Redact(malformed) = nil error")
	}
}

func TestCanonical(t *testing.T) {
	t.Parallel()
	ev := audit.Event{Type: audit.TypeActionDecided, Args: []byte(`{ "z": 1.50, "a": [ "<b>" ] }`), Details: map[string]string{"y": "1", "b": "2"}}
	if err := audit.Normalize(&ev, t0.Add(1234567)); err != nil {
		t.Fatal(err)
	}
	ev.Seq = 7
	got, err := audit.Canonical(&ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":7,"time":"2026-03-01T12:00:00.001234Z","type":"action.decided","args":{"a":["\u003cb\u003e"],"z":1.50},"details":{"b":"2","y":"1"}}`
	if string(got) != want {
		t.Errorf("Canonical() =\n%s\nwant\n%s", got, want)
	}
	back, err := audit.ParseEvent(got)
	if err != nil {
		t.Fatalf("ParseEvent(Canonical()) = %v", err)
	}
	if again, _ := audit.Canonical(back); string(again) != want {
		t.Errorf("Canonical(ParseEvent(x)) = %s, want x", again)
	}
	for _, bad := range []string{
		`{"seq":7,"time":"2026-03-01T12:00:00.001234Z","type":"action.decided","extra":1}`,
		`{"type":"action.decided","seq":7,"time":"2026-03-01T12:00:00.001234Z"}`,
		`{"seq":7,"time":"2026-03-01T12:00:00.001234Z","type":"action.decided"} {}`,
	} {
		if _, err := audit.ParseEvent([]byte(bad)); err == nil {
			t.Errorf("ParseEvent(%s) = nil error, want one (not canonical)", bad)
		}
	}
}
