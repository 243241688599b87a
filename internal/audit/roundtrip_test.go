package audit_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/audit"
)

// checkRoundTrip holds the ledger's promise for one event: whatever
// Normalize accepts, Canonical writes, and what Canonical writes passes
// both checks verify makes — ParseEvent (the live ledger's "not in
// canonical form" check) and the export's decode, re-encode and hash.
// It reports whether the event was recordable.
func checkRoundTrip(t *testing.T, ev audit.Event) bool {
	t.Helper()
	if err := audit.Normalize(&ev, t0); err != nil {
		if !errors.Is(err, audit.ErrInvalid) {
			t.Fatalf("Normalize() = %v, want nil or an error wrapping ErrInvalid", err)
		}
		return false
	}
	checkClean(t, reflect.ValueOf(ev))
	ev.Seq = 1
	data, err := audit.Canonical(&ev)
	if err != nil {
		if !errors.Is(err, audit.ErrInvalid) {
			t.Fatalf("Canonical(Normalize(ev)) = %v, want nil or an error wrapping ErrInvalid", err)
		}
		return false
	}
	parsed, err := audit.ParseEvent(data)
	if err != nil {
		t.Fatalf("ParseEvent(Canonical(Normalize(ev))) = %v\nevent: %q", err, data)
	}
	if again, err := audit.Canonical(parsed); err != nil || !bytes.Equal(again, data) {
		t.Fatalf("Canonical(ParseEvent(%q)) = %q, %v; want the input", data, again, err)
	}
	line := append(bytes.TrimSuffix(data, []byte("}")), `,"leaf_hash":"`+audit.LeafHash(data).String()+`"}`+"\n"...)
	if rep, err := audit.VerifyExport(bytes.NewReader(line), nil, fuzzVKey); err != nil || !rep.OK() {
		t.Fatalf("VerifyExport(%q) = %+v, %v; want OK", line, rep, err)
	}
	return true
}

// checkClean fails unless every string in v is valid UTF-8 within the
// limit of its field.
func checkClean(t *testing.T, v reflect.Value) {
	t.Helper()
	if invalidUTF8(v) {
		t.Fatalf("Normalize left invalid UTF-8 in %#v", v.Interface())
	}
	ev := v.Interface().(audit.Event)
	limits := map[string]int{
		"Type": audit.MaxTypeLen, "Actor": audit.MaxIDLen, "Agent": audit.MaxIDLen, "OnBehalfOf": audit.MaxIDLen,
		"Task": audit.MaxIDLen, "Action": audit.MaxActionLen, "Resource": audit.MaxResourceLen,
		"Decision": audit.MaxDecisionLen, "Reason": audit.MaxReasonLen, "ApprovalID": audit.MaxApprovalIDLen,
		"ArgsDigest": audit.MaxArgsDigestLen, "RequestID": audit.MaxRequestIDLen, "Point": audit.MaxPointLen,
	}
	for name, n := range limits {
		if s := v.FieldByName(name).String(); len(s) > n {
			t.Fatalf("Normalize left %s at %d bytes, over its limit of %d", name, len(s), n)
		}
	}
	for _, c := range ev.Chain {
		if len(c) > audit.MaxIDLen {
			t.Fatalf("Normalize left a chain entry of %d bytes", len(c))
		}
	}
	if len(ev.Reasons) > audit.MaxReasons {
		t.Fatalf("Normalize left %d reasons", len(ev.Reasons))
	}
	for _, r := range ev.Reasons {
		if len(r.Policy) > audit.MaxPolicyIDLen || len(r.Message) > audit.MaxMessageLen {
			t.Fatalf("Normalize left a reason over its limits: %d, %d bytes", len(r.Policy), len(r.Message))
		}
	}
	if o := ev.Outcome; o != nil && (len(o.Status) > audit.MaxStatusLen || len(o.Error) > audit.MaxMessageLen) {
		t.Fatalf("Normalize left an outcome over its limits")
	}
	for k, val := range ev.Details {
		if len(k) > audit.MaxDetailKeyLen || len(val) > audit.MaxDetailValueLen {
			t.Fatalf("Normalize left a detail over its limits: %d, %d bytes", len(k), len(val))
		}
	}
}

// TestCanonicalRoundTrip: for many random events — strings full of what
// JSON escapes, invalid UTF-8 included, Args canonical or not — what the
// ledger would record passes verification's canonical checks.
func TestCanonicalRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	n := 5000
	if testing.Short() {
		n = 500
	}
	recorded := 0
	for i := range n {
		var ev audit.Event
		fill(rng, reflect.ValueOf(&ev).Elem(), i%4 == 0)
		if rng.IntN(2) == 0 {
			ev.Time = t0.Add(time.Duration(rng.Int64N(1 << 50)))
		}
		if len(ev.Details) > audit.MaxDetails {
			for k := range ev.Details {
				if len(ev.Details) > audit.MaxDetails {
					delete(ev.Details, k)
				}
			}
		}
		if checkRoundTrip(t, ev) {
			recorded++
		}
	}
	if recorded < n/4 {
		t.Errorf("only %d of %d random events were recordable; the test checks too little", recorded, n)
	}
}

// TestNormalizeCleansStrings: invalid UTF-8 becomes U+FFFD, a cut never
// splits a character, keys that become equal are resolved by order, the
// caller's map and slices are not modified, and surplus reasons are
// counted.
func TestNormalizeCleansStrings(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 255) + "é" // the 256-byte cut falls inside é
	details := map[string]string{"claimed_client_id": long, "grant_type": "\xff", "k\xfe": "first", "k\xff": "second"}
	chain := []string{"spiffe://x/agent/\xff"}
	reasons := make([]audit.PolicyReason, audit.MaxReasons+3)
	ev := audit.Event{
		Type: audit.TypeTokenRefused, Actor: strings.Repeat("é", audit.MaxIDLen), Details: details, Chain: chain,
		Reasons: reasons, RequestID: "id-\xff\xfe",
	}
	if err := audit.Normalize(&ev, t0); err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("é", audit.MaxIDLen/2); ev.Actor != want {
		t.Errorf("Actor = %d bytes, want %d é", len(ev.Actor), audit.MaxIDLen/2)
	}
	if ev.RequestID != "id-\uFFFD" || ev.Details["grant_type"] != "\uFFFD" || ev.Chain[0] != "spiffe://x/agent/\uFFFD" {
		t.Errorf("Normalize() = request_id %q, grant_type %q, chain %q; want U+FFFD for the invalid bytes", ev.RequestID, ev.Details["grant_type"], ev.Chain)
	}
	if ev.Details["claimed_client_id"] != long {
		t.Errorf("claimed_client_id = %q, want it whole (within the limit)", ev.Details["claimed_client_id"])
	}
	if got := ev.Details["k\uFFFD"]; got != "first" || len(ev.Details) != 4 {
		t.Errorf("Details = %q; want k\uFFFD=first (the first key in byte order) and reasons_omitted", ev.Details)
	}
	if len(ev.Reasons) != audit.MaxReasons || ev.Details[audit.DetailReasonsOmitted] != "3" {
		t.Errorf("%d reasons, reasons_omitted %q; want %d and 3", len(ev.Reasons), ev.Details[audit.DetailReasonsOmitted], audit.MaxReasons)
	}
	if details["grant_type"] != "\xff" || chain[0] != "spiffe://x/agent/\xff" || len(details) != 4 {
		t.Error("Normalize modified the caller's map or slice")
	}
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 3, "abc"}, {"abc", 2, "ab"}, {"aé", 2, "a"}, {"aé", 3, "aé"}, {"\xff", 3, "\uFFFD"},
		{"\xff", 2, ""}, {"a\xff\xfeb", 10, "a\uFFFDb"}, {"日本", 5, "日"}, {"", 0, ""}, {"abc", 0, ""}, {"abc", -1, ""},
	} {
		if got := audit.Clip(tc.in, tc.n); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// FuzzCanonicalRoundTrip: for any event the fuzzer builds, what
// Normalize accepts verifies (see checkRoundTrip).
func FuzzCanonicalRoundTrip(f *testing.F) {
	for _, s := range [][]string{
		{"token.refused", "\xff", "client", "id-\xff\xfe", strings.Repeat("a", 255) + "é", `{"a":1}`},
		{"action.decided", "spiffe://x/agent/a", "file:/repo/\u2028<&>", "r1", "\x00\x1f\x7f\"\\", `{"x":"\xff","<":"\u2029"}`},
		{"", "", "", "", "", ""},
		{"a\xe2\x80", "\xed\xa0\x80", "\ufffd", "\\ufffd", "%FF%FE", `"\ud800"`},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], []byte(s[5]), int64(1764633600123456789))
	}
	f.Fuzz(func(t *testing.T, typ, id, resource, reqID, text string, args []byte, nanos int64) {
		ev := audit.Event{
			Time: time.Unix(0, nanos), Type: audit.Type(typ), Actor: id, Agent: id, Chain: []string{id, text},
			OnBehalfOf: text, Task: reqID, Action: typ, Resource: resource, Decision: text, Reason: text,
			Reasons: []audit.PolicyReason{{Policy: id, Message: text}}, ApprovalID: reqID,
			Outcome: &audit.Outcome{Status: typ, Error: text}, ArgsDigest: reqID, Args: args,
			Details: map[string]string{typ: text, text: id, reqID: resource}, RequestID: reqID, Point: typ,
		}
		checkRoundTrip(t, ev)
	})
}
