package audit

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
)

// OCSFVersion is the OCSF schema version ToOCSF maps to.
const OCSFVersion = "1.3.0"

// OCSF classes and categories used by ToOCSF.
const (
	OCSFClassAPIActivity      = 6003 // Application Activity / API Activity
	OCSFClassAuthorizeSession = 3003 // Identity & Access Management / Authorize Session
)

// ToOCSF maps an event to an OCSF 1.x event for SIEMs (see docs/audit.md):
// token and task events are Authorize Session (class 3003); actions,
// approvals and admin changes are API Activity (class 6003). Both carry the
// security-control profile's decision fields: action_id/action (1
// Allowed, 2 Denied), disposition_id/disposition (1 Allowed, 2 Blocked,
// 14 Delayed for actions held for approval) and policy. Everything mandate
// records that OCSF has no field for is under unmapped.
func ToOCSF(ev *Event) map[string]any {
	class, category, activity, activityName := ocsfClass(ev)
	meta := map[string]any{
		"version":  OCSFVersion,
		"product":  map[string]any{"name": "mandate", "vendor_name": "mandate"},
		"uid":      strconv.FormatInt(ev.Seq, 10),
		"profiles": []string{"security_control"},
		"log_name": "mandate audit ledger",
	}
	if ev.RequestID != "" {
		meta["correlation_uid"] = ev.RequestID
	}
	out := map[string]any{
		"class_uid":     class,
		"category_uid":  category,
		"activity_id":   activity,
		"activity_name": activityName,
		"type_uid":      class*100 + activity,
		"time":          ev.Time.UnixMilli(),
		"message":       string(ev.Type),
		"metadata":      meta,
	}
	sev, sevName := 1, "Informational"
	status, statusName := 1, "Success"
	switch ev.Decision {
	case DecisionAllow:
		out["action_id"], out["action"] = 1, "Allowed"
		out["disposition_id"], out["disposition"] = 1, "Allowed"
	case DecisionDeny:
		out["action_id"], out["action"] = 2, "Denied"
		out["disposition_id"], out["disposition"] = 2, "Blocked"
		sev, sevName = 3, "Medium"
		status, statusName = 2, "Failure"
	case DecisionApprovalRequired:
		out["action_id"], out["action"] = 99, "Other"
		out["disposition_id"], out["disposition"] = 14, "Delayed"
		sev, sevName = 2, "Low"
	}
	if ev.Outcome != nil && ev.Outcome.Status != "" && ev.Outcome.Status != "ok" {
		status, statusName = 2, "Failure"
		out["status_detail"] = ev.Outcome.Error
	}
	out["severity_id"], out["severity"] = sev, sevName
	out["status_id"], out["status"] = status, statusName
	if ev.Reason != "" {
		out["status_detail"] = ev.Reason
	}
	switch {
	case len(ev.Reasons) > 0:
		p := ev.Reasons[0]
		out["policy"] = map[string]any{"uid": p.Policy, "name": p.Policy, "desc": p.Message}
	case ev.Details["policies"] != "":
		// The decision pipeline lists the deciding policies in details.
		id, _, _ := strings.Cut(ev.Details["policies"], ",")
		out["policy"] = map[string]any{"uid": id, "name": id}
	}
	actor := map[string]any{}
	if ev.Agent != "" {
		actor["user"] = map[string]any{"uid": ev.Agent, "type": "Other", "type_id": 99}
	} else if ev.Actor != "" {
		actor["user"] = map[string]any{"uid": ev.Actor}
	}
	if ev.Task != "" {
		actor["session"] = map[string]any{"uid": ev.Task}
	}
	if ev.Point != "" {
		actor["app_name"] = ev.Point
	}
	if class == OCSFClassAuthorizeSession {
		if u, ok := actor["user"]; ok {
			out["user"] = u
		}
		if s, ok := actor["session"]; ok {
			out["session"] = s
		}
		if scope := ev.Details["scope"]; scope != "" {
			out["privileges"] = strings.Fields(scope)
		}
	} else {
		api := map[string]any{"operation": firstNonEmpty(ev.Action, string(ev.Type))}
		if ev.RequestID != "" {
			api["request"] = map[string]any{"uid": ev.RequestID}
		}
		if ev.Point != "" {
			api["service"] = map[string]any{"name": ev.Point}
		}
		out["api"] = api
		out["src_endpoint"] = map[string]any{"name": firstNonEmpty(ev.Point, "mandate")}
		if ev.Resource != "" {
			out["resources"] = []map[string]any{{"uid": ev.Resource, "type": resourceType(ev.Resource)}}
		}
	}
	out["actor"] = actor
	if ev.Outcome != nil && ev.Outcome.Duration > 0 {
		out["duration"] = ev.Outcome.Duration.Milliseconds()
	}
	unmapped := map[string]any{"mandate_type": string(ev.Type), "seq": ev.Seq}
	for k, v := range map[string]any{"actor": ev.Actor, "on_behalf_of": ev.OnBehalfOf, "approval_id": ev.ApprovalID,
		"args_digest": ev.ArgsDigest, "decision": ev.Decision, "action": ev.Action} {
		if v != "" {
			unmapped[k] = v
		}
	}
	if len(ev.Chain) > 0 {
		unmapped["delegation_chain"] = ev.Chain
	}
	if len(ev.Reasons) > 0 {
		unmapped["reasons"] = ev.Reasons
	}
	if len(ev.Details) > 0 {
		unmapped["details"] = ev.Details
	}
	if len(ev.Args) > 0 {
		unmapped["args"] = ev.Args
	}
	if ev.Outcome != nil {
		unmapped["outcome"] = ev.Outcome
	}
	out["unmapped"] = unmapped
	return out
}

func ocsfClass(ev *Event) (class, category, activity int, name string) {
	t := string(ev.Type)
	switch {
	case strings.HasPrefix(t, "token.") || t == string(TypeTaskStarted) || t == string(TypeTaskDelegated):
		// Granting a task (and its tokens) assigns privileges to an agent.
		if ev.Decision == DecisionDeny || ev.Type == TypeTokenRevoked {
			return OCSFClassAuthorizeSession, 3, 99, "Other"
		}
		return OCSFClassAuthorizeSession, 3, 1, "Assign Privileges"
	case strings.HasSuffix(t, ".registered"), t == string(TypeApprovalRequested):
		return OCSFClassAPIActivity, 6, 1, "Create"
	case strings.HasSuffix(t, ".retired"):
		return OCSFClassAPIActivity, 6, 4, "Delete"
	case strings.HasPrefix(t, "agent."), strings.HasPrefix(t, "task."), strings.HasPrefix(t, "approval."), strings.HasPrefix(t, "signing_key."):
		return OCSFClassAPIActivity, 6, 3, "Update"
	}
	switch {
	case strings.HasSuffix(ev.Action, ".read"), ev.Action == "prompt.get":
		return OCSFClassAPIActivity, 6, 2, "Read"
	case strings.HasSuffix(ev.Action, ".write"):
		return OCSFClassAPIActivity, 6, 3, "Update"
	}
	return OCSFClassAPIActivity, 6, 99, "Other"
}

func resourceType(r string) string {
	if t, _, ok := strings.Cut(r, ":"); ok && !strings.Contains(t, "/") {
		return t
	}
	return "Other"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// WriteOCSF writes evs as OCSF JSON lines.
func WriteOCSF(w io.Writer, evs []*Event) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, ev := range evs {
		if err := enc.Encode(ToOCSF(ev)); err != nil {
			return err
		}
	}
	return nil
}
