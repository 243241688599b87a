package approval

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// Webhook notifications: every request, decision, expiry and escalation
// is posted in Slack's incoming-webhook JSON ({"text": ...}), signed and
// timestamped, retried with backoff, in the background: a receiver that
// is down or slow never holds up a decision (a full queue drops the
// notice, counted and logged). Each delivery, or its final failure, is a
// ledger event (approval.notified). An ARAP callback registered for a
// request (Callback) is posted the ARAP task on its outcome, signed the
// same way.

// Signature headers: X-Mandate-Timestamp is the unix time of the
// delivery; X-Mandate-Signature is "v1=" and the hex HMAC-SHA256, under
// the webhook secret, of the timestamp, a dot, and the body. A receiver
// recomputes it and refuses a timestamp more than a few minutes old.
const (
	HeaderTimestamp = "X-Mandate-Timestamp"
	HeaderSignature = "X-Mandate-Signature"
)

// Sign returns the X-Mandate-Signature value of body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookConfig configures a Webhooks notifier.
type WebhookConfig struct {
	// URL receives every notice; empty sends none but escalations and
	// callbacks.
	URL string
	// Escalations maps an agent's escalation contact to the webhook URL
	// that reaches them; an escalation goes there (and to URL).
	Escalations map[string]string
	// Secret signs every delivery. Required.
	Secret []byte
	// Recorder records deliveries (approval.notified).
	Recorder audit.Recorder
	// Link, if set, turns a request into the address of its approval
	// page, linked from the messages of new and escalated requests.
	Link func(id ID) string
	// Client posts (default: a client with a 10 s timeout); Attempts and
	// Backoff bound the retries (default 5 attempts, 1 s doubling).
	Client   *http.Client
	Attempts int
	Backoff  time.Duration
	// Queue is how many notices may wait (default 1024).
	Queue  int
	Logger *slog.Logger
}

// Webhooks delivers notices by webhook. Start its worker with Run.
type Webhooks struct {
	cfg   WebhookConfig
	log   *slog.Logger
	queue chan delivery

	mu      sync.Mutex
	dropped int64
}

type delivery struct {
	url, kind string
	body      []byte
	r         *Request
}

// NewWebhooks returns a notifier.
func NewWebhooks(cfg WebhookConfig) (*Webhooks, error) {
	if len(cfg.Secret) == 0 || cfg.Recorder == nil {
		return nil, fmt.Errorf("approval: webhooks need a secret and a recorder")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhooks{cfg: cfg, log: log, queue: make(chan delivery, cfg.Queue)}, nil
}

// Notify implements Notifier; it never blocks.
func (w *Webhooks) Notify(n Notice) {
	var urls []string
	if w.cfg.URL != "" {
		urls = append(urls, w.cfg.URL)
	}
	if n.Kind == "escalated" || n.Kind == NoticeDenials {
		if u := w.cfg.Escalations[n.Request.Escalation]; u != "" && u != w.cfg.URL {
			urls = append(urls, u)
		}
	}
	if len(urls) > 0 {
		body, _ := json.Marshal(map[string]string{"text": w.text(n)})
		for _, u := range urls {
			w.enqueue(delivery{url: u, kind: n.Kind, body: body, r: n.Request})
		}
	}
	if cb := n.Request.Callback; cb != nil && n.Request.Status.Terminal() {
		body, _ := json.Marshal(map[string]any{"state": cb.State, "task": map[string]string{"id": string(n.Request.ID), "status": string(n.Request.Status)}})
		w.enqueue(delivery{url: cb.Endpoint, kind: "callback", body: body, r: n.Request})
	}
}

func (w *Webhooks) enqueue(d delivery) {
	select {
	case w.queue <- d:
	default:
		w.mu.Lock()
		w.dropped++
		w.mu.Unlock()
		w.log.Warn("approval notice dropped: the webhook queue is full", "kind", d.kind, "id", d.r.ID)
	}
}

// Dropped returns how many notices a full queue dropped.
func (w *Webhooks) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// text is the Slack message of a notice.
func (w *Webhooks) text(n Notice) string {
	r := n.Request
	var b strings.Builder
	if n.Kind == NoticeDenials {
		fmt.Fprintf(&b, ":no_entry: %s keeps being denied: %s in task %s; owner %s.", r.Agent, r.Reason, r.Task, r.AgentOwner)
		fmt.Fprintf(&b, "\nReview it: `mandate audit query --task %s --decision deny`; stop it: `mandate task revoke %s`.", r.Task, r.Task)
		return b.String()
	}
	switch n.Kind {
	case "requested":
		fmt.Fprintf(&b, ":raised_hand: Approval needed: %s wants to %s `%s`", r.Agent, r.Action, r.Resource)
	case "escalated":
		fmt.Fprintf(&b, ":rotating_light: Escalated to %s: %s has waited since %s to %s `%s`", r.Escalation, r.Agent, r.CreatedAt.Format(time.RFC3339), r.Action, r.Resource)
	default:
		fmt.Fprintf(&b, "Approval %s: %s %s `%s`", r.Status, r.Agent, r.Action, r.Resource)
		if r.Decider != "" {
			fmt.Fprintf(&b, " (by %s)", r.Decider)
		}
	}
	fmt.Fprintf(&b, "\nTask %s on behalf of %s; owner %s; needs %s.", r.Task, r.OnBehalfOf, r.AgentOwner, strings.Join(r.Approvals, ", "))
	if r.Reason != "" {
		fmt.Fprintf(&b, "\nReason: %s", r.Reason)
	}
	if n.Kind == "requested" || n.Kind == "escalated" {
		if w.cfg.Link != nil {
			fmt.Fprintf(&b, "\n<%s|Review and decide on the approval page>", w.cfg.Link(r.ID))
		}
		fmt.Fprintf(&b, "\nOr: `mandate approval show %s`, then `mandate approval approve %s` or `deny`.", r.ID, r.ID)
		fmt.Fprintf(&b, "\nExpires %s.", r.ExpiresAt.Format(time.RFC3339))
	}
	return b.String()
}

// Run delivers queued notices until ctx ends.
func (w *Webhooks) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-w.queue:
			w.deliver(ctx, d)
		}
	}
}

// deliver posts d, retrying with backoff, and records the outcome.
func (w *Webhooks) deliver(ctx context.Context, d delivery) {
	var last error
	attempts := 0
	wait := w.cfg.Backoff
	for attempts < w.cfg.Attempts {
		attempts++
		if last = w.post(ctx, d); last == nil {
			break
		}
		if attempts == w.cfg.Attempts {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait *= 2
	}
	ev := audit.Event{
		Type: TypeNotified, Actor: "system", Agent: d.r.Agent, Task: string(d.r.Task), Action: d.r.Action, Resource: d.r.Resource,
		ApprovalID: string(d.r.ID), Details: map[string]string{"kind": d.kind, "attempts": strconv.Itoa(attempts), "outcome": "delivered"},
	}
	if last != nil {
		ev.Details["outcome"], ev.Reason = "failed", last.Error()
		w.log.Warn("approval webhook not delivered", "kind", d.kind, "id", d.r.ID, "attempts", attempts, "err", last)
	}
	if err := w.cfg.Recorder.Record(context.WithoutCancel(ctx), ev); err != nil {
		w.log.Warn("approval notice not recorded", "err", err)
	}
}

func (w *Webhooks) post(ctx context.Context, d delivery) error {
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, d.body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}
