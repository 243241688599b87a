package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A credential AuthZEN cannot even read is a refused attempt: 401 with a
// challenge, and a denied decision in the ledger. No credential at all is
// a client discovering what to send: 401, nothing recorded.
func TestAuthZENRecordsMalformedCredentials(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, testConfig(t))
	sock := socketClient(s.SocketPath())
	body := `{"subject": {"type": "agent", "id": "spiffe://mandate.local/agent/x"}, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "/x"}}`
	denials := func() int {
		t.Helper()
		code, out := sockDo(t, sock, "GET", "/admin/v1/audit/events?type=action.decided&decision=deny&limit=1000", "", "")
		if code != 200 {
			t.Fatalf("audit events: %d %s", code, out)
		}
		var evs struct {
			Events []map[string]any `json:"events"`
		}
		_ = json.Unmarshal([]byte(out), &evs)
		for _, ev := range evs.Events {
			if ev["point"] != "authzen" {
				t.Errorf("denial at point %v: %v", ev["point"], ev)
			}
		}
		return len(evs.Events)
	}
	for i, tc := range []struct {
		header   []string
		recorded bool
	}{
		{nil, false},
		{[]string{"Bearer"}, true},
		{[]string{"Basic dXNlcjpwYXNz"}, true},
		{[]string{"Bearer a", "Bearer b"}, true},
		{[]string{"Bearer " + strings.Repeat("x", 20000)}, true},
	} {
		before := denials()
		req, _ := http.NewRequest("POST", "http://"+s.Addr().String()+"/access/v1/evaluation", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for _, h := range tc.header {
			req.Header.Add("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%d: %d %q %s, want 401 with a challenge", i, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
		}
		if got := denials() - before; got != map[bool]int{true: 1, false: 0}[tc.recorded] {
			t.Errorf("%d: %d denials recorded, want recorded=%v", i, got, tc.recorded)
		}
	}
	if code, out := sockDo(t, sock, "POST", "/admin/v1/audit/verify", "", ""); code != 200 || strings.Contains(out, "first_bad_seq") {
		t.Errorf("audit verify: %d %s", code, out)
	}
}
