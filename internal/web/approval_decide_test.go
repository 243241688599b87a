package web

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/approval"
)

// FuzzDecisionForm: a decision post is accepted only with the session's
// CSRF token, once each field, a digest, a bounded UTF-8 reason and, for
// an approval, an explicit reach of once or task (none for a denial).
func FuzzDecisionForm(f *testing.F) {
	f.Add("csrf=tok&digest=d&reach=once&reason=ok", true)
	f.Add("csrf=tok&digest=d&reach=task", true)
	f.Add("csrf=tok&digest=d&reason=no", false)
	f.Add("csrf=tok&digest=d&reach=once&reach=task", true)
	f.Add("csrf=tok&csrf=tok&digest=d&reach=once", true)
	f.Add("csrf=TOK&digest=d&reach=once", true)
	f.Add("csrf=tok&digest=&reach=once", true)
	f.Add("csrf=tok&digest=d&reach=Once", true)
	f.Add("csrf=tok&digest=d&reach=once&reason=%ff", true)
	f.Add("csrf=tok;digest=d&reach=once", true)
	f.Fuzz(func(t *testing.T, body string, approve bool) {
		p := &approvalPages{}
		r := httptest.NewRequest("POST", "/approvals/x/approve", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		form, refused := p.readDecisionForm(httptest.NewRecorder(), r, "tok", approve)
		if refused != "" {
			return
		}
		pf := r.PostForm
		for k, vs := range pf {
			if len(vs) != 1 {
				t.Fatalf("accepted %q twice", k)
			}
		}
		switch {
		case pf.Get("csrf") != "tok":
			t.Fatalf("accepted the CSRF token %q", pf.Get("csrf"))
		case form.digest == "":
			t.Fatal("accepted without a digest")
		case len(form.reason) > maxApprovalReason:
			t.Fatal("accepted an oversized reason")
		case approve && form.reach != approval.ReachOnce && form.reach != approval.ReachTask:
			t.Fatalf("accepted the reach %q", form.reach)
		case !approve && (form.reach != "" || pf.Has("reach")):
			t.Fatal("accepted a denial with a reach")
		}
	})
}
