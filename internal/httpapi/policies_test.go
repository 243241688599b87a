package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

func newPolicyAdminServer(t *testing.T) (*httptest.Server, *sqlite.DB, *policy.Engine) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng := policy.NewEngine(nil, nil)
	loader := policy.NewLoader(policy.LoaderConfig{Engine: eng, Defaults: true, API: db})
	if err := loader.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := httpapi.NewPolicyAdmin(httpapi.PolicyAdminConfig{Engine: eng, Loader: loader, Store: db, Recorder: mustLedger(t, db)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(admin.WithActor(r.Context(), "admin:alice")))
	}))
	t.Cleanup(srv.Close)
	return srv, db, eng
}

func policyDo(t *testing.T, srv *httptest.Server, method, name, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/admin/v1/policies/"+name, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func policyEvents(t *testing.T, db *sqlite.DB) []*audit.Event {
	t.Helper()
	evs, err := db.ListEvents(t.Context(), audit.Query{Type: audit.TypePolicyChanged})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

const (
	noReads  = `@id("no-reads") forbid(principal, action == Action::"file.read", resource);`
	noWrites = `@id("no-writes") forbid(principal, action == Action::"file.write", resource);`
)

// TestPolicyAdminRefusesInvalidSource: a document that does not compile is
// refused with the compiler's problem and its location, and is neither
// stored, nor live, nor recorded.
func TestPolicyAdminRefusesInvalidSource(t *testing.T) {
	t.Parallel()
	srv, db, eng := newPolicyAdminServer(t)
	before := eng.Set().Len()
	resp, body := policyDo(t, srv, "PUT", "bad", "forbid(principal, action, resource) when { context.nope };")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"file":"api:bad"`) || !strings.Contains(body, `"line":1`) {
		t.Fatalf("PUT invalid: %d %s, want 400 with the problem at api:bad line 1", resp.StatusCode, body)
	}
	if _, err := db.GetPolicySource(t.Context(), "bad"); err == nil {
		t.Error("the invalid document was stored")
	}
	if eng.Set().Len() != before {
		t.Error("the live set changed")
	}
	if evs := policyEvents(t, db); len(evs) != 0 {
		t.Errorf("a refused PUT was recorded: %+v", evs)
	}
	// Bad names and preconditions are refused before anything happens.
	for _, c := range []struct{ name, header, value string }{
		{"Bad", "X-None", ""},
		{"ok", "If-Match", `W/"1"`},
		{"ok", "If-Match", `"01"`},
		{"ok", "If-Match", `"1", "2"`},
		{"ok", "If-Match", `1`},
		{"ok", "If-None-Match", `"1"`},
	} {
		if resp, body := policyDo(t, srv, "PUT", c.name, noReads, c.header, c.value); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT %s with %s: %s = %d %s, want 400", c.name, c.header, c.value, resp.StatusCode, body)
		}
	}
	if list, _ := db.ListPolicySources(t.Context()); len(list) != 0 {
		t.Errorf("refused PUTs stored %d documents", len(list))
	}
}

// TestPolicyAdminETags: PUT returns the document's ETag; If-Match with a
// stale one is refused with 412 and changes nothing; If-None-Match: *
// creates only; every change is recorded with the old and new digests.
func TestPolicyAdminETags(t *testing.T) {
	t.Parallel()
	srv, db, eng := newPolicyAdminServer(t)
	// If-Match: * needs a document.
	if resp, body := policyDo(t, srv, "PUT", "site", noReads, "If-Match", "*"); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PUT If-Match * of a missing document: %d %s, want 412", resp.StatusCode, body)
	}
	resp, body := policyDo(t, srv, "PUT", "site", noReads, "If-None-Match", "*")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT (create): %d %s", resp.StatusCode, body)
	}
	v1 := resp.Header.Get("ETag")
	if v1 == "" {
		t.Fatal("PUT returned no ETag")
	}
	if resp, body := policyDo(t, srv, "PUT", "site", noWrites, "If-None-Match", "*"); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PUT If-None-Match * over an existing document: %d %s, want 412", resp.StatusCode, body)
	}
	resp, body = policyDo(t, srv, "GET", "site", "")
	var doc httpapi.PolicyDocument
	if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != 200 || resp.Header.Get("ETag") != v1 ||
		doc.Text != noReads || doc.UpdatedBy != "admin:alice" || doc.Digest != policy.SourceDigest([]byte(noReads)) {
		t.Fatalf("GET: %d %s ETag %s, want the document with ETag %s", resp.StatusCode, body, resp.Header.Get("ETag"), v1)
	}

	resp, body = policyDo(t, srv, "PUT", "site", noWrites, "If-Match", v1)
	v2 := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || v2 == "" || v2 == v1 {
		t.Fatalf("PUT If-Match current: %d %s ETag %s", resp.StatusCode, body, v2)
	}
	// A writer still holding v1 loses, and the live set keeps v2.
	if resp, body := policyDo(t, srv, "PUT", "site", noReads, "If-Match", v1); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PUT If-Match stale: %d %s, want 412", resp.StatusCode, body)
	}
	if resp, body := policyDo(t, srv, "DELETE", "site", "", "If-Match", v1); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("DELETE If-Match stale: %d %s, want 412", resp.StatusCode, body)
	}
	if got, _ := db.GetPolicySource(t.Context(), "site"); got == nil || string(got.Text) != noWrites {
		t.Errorf("after stale writes, stored %+v", got)
	}
	if !strings.Contains(strings.Join(eng.Set().Sources(), " "), "api:site") {
		t.Errorf("live sources %v lack api:site", eng.Set().Sources())
	}
	resp, body = policyDo(t, srv, "PUT", "site", noWrites, "If-Match", "*")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT If-Match *: %d %s", resp.StatusCode, body)
	}
	if resp, body := policyDo(t, srv, "DELETE", "site", "", "If-Match", v2); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("DELETE If-Match of the replaced revision: %d %s, want 412", resp.StatusCode, body)
	}
	v2 = resp.Header.Get("ETag")
	if resp, body := policyDo(t, srv, "DELETE", "site", "", "If-Match", v2); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE If-Match current: %d %s", resp.StatusCode, body)
	}
	// The old ETag cannot match the next document of that name.
	if resp, body := policyDo(t, srv, "PUT", "site", noReads, "If-Match", v2); resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PUT If-Match of the deleted revision: %d %s, want 412", resp.StatusCode, body)
	}
	if resp, _ := policyDo(t, srv, "GET", "site", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET deleted: %d, want 404", resp.StatusCode)
	}

	var got []string
	for _, ev := range policyEvents(t, db) {
		got = append(got, ev.Action+" "+ev.Resource+" "+ev.Actor+" "+ev.Details["old_digest"]+">"+ev.Details["new_digest"])
	}
	r, w := policy.SourceDigest([]byte(noReads)), policy.SourceDigest([]byte(noWrites))
	want := []string{"put site admin:alice >" + r, "put site admin:alice " + r + ">" + w, "put site admin:alice " + w + ">" + w, "delete site admin:alice " + w + ">"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("policy events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
