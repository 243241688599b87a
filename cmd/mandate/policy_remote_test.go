package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var etagLine = regexp.MustCompile(`ETag:?\s+("\d+")`)

// etagIn returns the ETag a put or show printed.
func etagIn(t *testing.T, out string) string {
	t.Helper()
	m := etagLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ETag in the output:\n%s", out)
	}
	return m[1]
}

// TestPolicyOptimisticConcurrency: put and delete conditional on an ETag
// change the document only while it is at that ETag; a stale ETag is
// refused with the current one, changing nothing.
func TestPolicyOptimisticConcurrency(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	dir := t.TempDir()
	v1, v2, v3 := filepath.Join(dir, "v1.cedar"), filepath.Join(dir, "v2.cedar"), filepath.Join(dir, "v3.cedar")
	writePolicyFile(t, v1, `@id("no-etc") forbid(principal, action, resource == File::"/etc/passwd");`)
	writePolicyFile(t, v2, `@id("no-etc") forbid(principal, action, resource == File::"/etc/shadow");`)
	writePolicyFile(t, v3, `@id("no-etc") forbid(principal, action, resource == File::"/etc/hosts");`)

	first := etagIn(t, mustRun(t, env, "policy", "put", "--create", "no-etc", v1))
	if code, _, errs := mandate(t, env, "policy", "put", "--create", "no-etc", v2); code != 1 || !strings.Contains(errs, "already exists, at ETag "+first) {
		t.Errorf("put --create over an existing document: exit %d, %s; want exit 1 naming ETag %s", code, errs, first)
	}
	if code, _, errs := mandate(t, env, "policy", "put", "--create", "--if-match", first, "no-etc", v2); code == 0 || !strings.Contains(errs, "create") {
		t.Errorf("put --create --if-match: exit %d, %s; want them refused together", code, errs)
	}
	show := mustRun(t, env, "policy", "show", "no-etc")
	if got := etagIn(t, show); got != first || !strings.Contains(show, "/etc/passwd") {
		t.Fatalf("show after put: ETag %s, want %s; output:\n%s", got, first, show)
	}

	// The right ETag: the put succeeds and the ETag changes. The user
	// may type it without the quotes.
	second := etagIn(t, mustRun(t, env, "policy", "put", "--if-match", strings.Trim(first, `"`), "no-etc", v2))
	if second == first {
		t.Fatalf("put --if-match %s left the ETag at %s", first, second)
	}

	// A stale ETag: refused with a 412-based message naming the current
	// ETag; the document is unchanged.
	code, _, errs := mandate(t, env, "policy", "put", "--if-match", first, "no-etc", v3)
	if code != 1 || !strings.Contains(errs, "412") || !strings.Contains(errs, "now at ETag "+second) {
		t.Errorf("put with stale ETag %s: exit %d, %s; want exit 1, a 412 and the current ETag %s", first, code, errs, second)
	}
	show = mustRun(t, env, "policy", "show", "no-etc")
	if got := etagIn(t, show); got != second || !strings.Contains(show, "/etc/shadow") || strings.Contains(show, "/etc/hosts") {
		t.Errorf("after the refused put: ETag %s (want %s), document:\n%s", got, second, show)
	}

	// A delete with the stale ETag is refused the same way and the policy
	// is still there, in the live set too.
	code, _, errs = mandate(t, env, "policy", "delete", "--if-match", first, "no-etc")
	if code != 1 || !strings.Contains(errs, "412") || !strings.Contains(errs, "now at ETag "+second) {
		t.Errorf("delete with stale ETag %s: exit %d, %s; want exit 1, a 412 and the current ETag %s", first, code, errs, second)
	}
	if got := etagIn(t, mustRun(t, env, "policy", "show", "no-etc")); got != second {
		t.Errorf("after the refused delete: ETag %s, want %s", got, second)
	}
	if out := mustRun(t, env, "policy", "list"); !strings.Contains(out, "api:no-etc") {
		t.Errorf("after the refused delete the live set lacks the policy:\n%s", out)
	}

	// The current ETag deletes it.
	mustRun(t, env, "policy", "delete", "--if-match", second, "no-etc")
	if code, _, errs := mandate(t, env, "policy", "show", "no-etc"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("show after delete: exit %d, %s; want not found", code, errs)
	}
	// If-Match on a document that is gone (as after someone deleted it).
	if code, _, errs := mandate(t, env, "policy", "put", "--if-match", second, "no-etc", v3); code != 1 || !strings.Contains(errs, "does not exist") {
		t.Errorf("put --if-match on a deleted document: exit %d, %s; want exit 1, does not exist", code, errs)
	}
}

// TestPolicyConflictMessages: a 409 (another unconditional change raced
// this one), which a real server answers only in a race, says so and
// what to do; other errors pass through unchanged. The server here only
// answers with the status.
func TestPolicyConflictMessages(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"status":409,"detail":"policy version conflict; it was changed concurrently, retry"}`)
	}))
	defer srv.Close()
	c := &client{http: srv.Client(), base: srv.URL, output: "table"}
	_, _, err := c.doWithHeaders(t.Context(), "PUT", policyPath("p"), nil, nil, map[string]string{"text": ""})
	if apiStatus(err) != http.StatusConflict {
		t.Fatalf("PUT: %v, want the server's 409", err)
	}
	got := explainPolicyConflict(t.Context(), c, "p", "put", http.Header{}, err).Error()
	if !strings.Contains(got, "policy p was not changed") || !strings.Contains(got, "409") || !strings.Contains(got, "retry") {
		t.Errorf("409 explained as %q", got)
	}
	other := errors.New("no server")
	if got := explainPolicyConflict(t.Context(), c, "p", "put", http.Header{}, other); got != other {
		t.Errorf("another error became %v", got)
	}
}
