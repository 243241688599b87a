package httpapi

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// maxAuditPage caps the events one query returns.
const maxAuditPage = 1000

// longRequest is the write deadline of exports and verifications, which
// read the whole ledger.
const longRequest = time.Hour

// CheckpointResponse is a signed checkpoint as the admin API returns it.
type CheckpointResponse struct {
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
	// Note is the signed checkpoint, the text auditors keep and verify.
	Note string `json:"note"`
	// Key is the ledger's public key in note verifier format.
	Key string `json:"key"`
}

func (h *Admin) registerAudit() {
	h.mux.HandleFunc("GET /admin/v1/audit/events", h.auditEvents)
	h.mux.HandleFunc("GET /admin/v1/audit/checkpoint", h.auditCheckpoint(false))
	h.mux.HandleFunc("POST /admin/v1/audit/checkpoint", h.auditCheckpoint(true))
	h.mux.HandleFunc("GET /admin/v1/audit/key", h.auditKey)
	h.mux.HandleFunc("GET /admin/v1/audit/proof/{seq}", h.auditProof)
	h.mux.HandleFunc("GET /admin/v1/audit/consistency", h.auditConsistency)
	h.mux.HandleFunc("GET /admin/v1/audit/export", h.auditExport)
	h.mux.HandleFunc("POST /admin/v1/audit/verify", h.auditVerify)
}

// auditQuery parses the event filters of /audit/events and /audit/export.
func (h *Admin) auditQuery(q url.Values) (audit.Query, error) {
	var aq audit.Query
	bad := func(format string, args ...any) (audit.Query, error) {
		return audit.Query{}, fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
	}
	for k := range q {
		switch k {
		case "agent", "task", "type", "decision", "since", "until", "after", "limit", "last":
		default:
			return bad("unknown parameter %q (want agent, task, type, decision, since, until, after, limit, last)", k)
		}
	}
	if ref := q.Get("agent"); ref != "" {
		id, err := h.svc.AgentID(ref)
		if err != nil {
			return audit.Query{}, err
		}
		aq.Agent = id.String()
	}
	aq.Task, aq.Type = q.Get("task"), audit.Type(q.Get("type"))
	switch d := q.Get("decision"); d {
	case "", audit.DecisionAllow, audit.DecisionDeny, audit.DecisionApprovalRequired:
		aq.Decision = d
	default:
		return bad("decision must be allow, deny or approval_required")
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return bad("%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name)
			}
			*p.dst = t
		}
	}
	if !aq.Since.IsZero() && !aq.Until.IsZero() && !aq.Until.After(aq.Since) {
		return bad("until must be after since")
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return bad("after must be a sequence number")
		}
		aq.AfterSeq = n
	}
	switch v := q.Get("last"); v {
	case "", "false":
	case "true":
		aq.Last = true
	default:
		return bad("last must be true or false")
	}
	return aq, nil
}

func (h *Admin) auditEvents(w http.ResponseWriter, r *http.Request) {
	q, err := h.auditQuery(r.URL.Query())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxAuditPage {
			writeError(w, r, h.log, fmt.Errorf("%w: limit must be an integer from 1 to %d", errBadRequest, maxAuditPage))
			return
		}
	}
	q.Limit = limit
	evs, err := h.ledger.Events(r.Context(), q)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if evs == nil {
		evs = []*audit.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (h *Admin) checkpointResponse(c *audit.Checkpoint) CheckpointResponse {
	return CheckpointResponse{Origin: c.Origin, Size: c.Size, Root: c.Root.String(), Note: string(c.Note), Key: h.ledger.VerifierKey()}
}

func (h *Admin) auditCheckpoint(create bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var c *audit.Checkpoint
		var err error
		if create {
			c, err = h.ledger.Checkpoint(r.Context())
		} else {
			c, err = h.ledger.LatestCheckpoint(r.Context())
		}
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		writeJSON(w, http.StatusOK, h.checkpointResponse(c))
	}
}

func (h *Admin) auditKey(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"origin": h.ledger.Origin(), "key": h.ledger.VerifierKey()})
}

// sizeParam parses an optional tree size parameter (0 if absent).
func sizeParam(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %s must be a positive tree size", errBadRequest, name)
	}
	return n, nil
}

func (h *Admin) auditProof(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		writeError(w, r, h.log, fmt.Errorf("%w: the sequence number must be a positive integer", errBadRequest))
		return
	}
	size, err := sizeParam(r.URL.Query(), "tree_size")
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	p, err := h.ledger.ProveInclusion(r.Context(), seq, size)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *Admin) auditConsistency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	old, err := sizeParam(q, "old")
	if err == nil && old == 0 {
		err = fmt.Errorf("%w: old (the earlier tree size) is required", errBadRequest)
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	newSize, err := sizeParam(q, "new")
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	p, err := h.ledger.ProveConsistency(r.Context(), old, newSize)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// auditExport streams events as JSON lines. Without filters and in the
// jsonl format it is the verifiable export (audit.Ledger.Export);
// otherwise the matching events, in the jsonl or ocsf format.
func (h *Admin) auditExport(w http.ResponseWriter, r *http.Request) {
	vals := r.URL.Query()
	format := vals.Get("format")
	switch format {
	case "", "jsonl":
		format = "jsonl"
	case "ocsf":
	default:
		writeError(w, r, h.log, fmt.Errorf("%w: format must be jsonl or ocsf", errBadRequest))
		return
	}
	filters := url.Values{}
	for k, v := range vals {
		if k != "format" {
			filters[k] = v
		}
	}
	q, err := h.auditQuery(filters)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if vals.Get("limit") != "" || q.Last {
		writeError(w, r, h.log, fmt.Errorf("%w: export takes no limit or last; filter with since, until or after", errBadRequest))
		return
	}
	// An export of a large ledger outlasts the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(longRequest))
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	filtered := q != (audit.Query{})
	if format == "jsonl" && !filtered {
		// Errors after the first byte cannot change the status; a
		// truncated export fails verification.
		if _, err := h.ledger.Export(r.Context(), w); err != nil {
			h.log.Error("audit export failed", "err", err)
		}
		return
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	for {
		q.Limit = maxAuditPage
		evs, err := h.ledger.Events(r.Context(), q)
		if err != nil {
			h.log.Error("audit export failed", "err", err)
			return
		}
		if format == "ocsf" {
			err = audit.WriteOCSF(bw, evs)
		} else {
			for _, ev := range evs {
				var b []byte
				if b, err = audit.Canonical(ev); err != nil {
					break
				}
				bw.Write(b)
				bw.WriteByte('\n')
			}
		}
		if err != nil {
			h.log.Error("audit export failed", "err", err)
			return
		}
		if len(evs) < maxAuditPage {
			return
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}

func (h *Admin) auditVerify(w http.ResponseWriter, r *http.Request) {
	// Verifying a large ledger outlasts the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(longRequest))
	rep, err := h.ledger.Verify(r.Context())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
