package approval_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/task"
)

type noticeLog struct {
	mu sync.Mutex
	ns []approval.Notice
}

func (l *noticeLog) Notify(n approval.Notice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ns = append(l.ns, n)
}

// TestDenials: Threshold denials of one task within Window raise one
// alarm — recorded, notified to the owner and escalation contact, the
// task stopped — and no second one inside the window; other tasks'
// denials do not count; once the window has passed, it counts anew.
func TestDenials(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	rec, notes := &memRecorder{}, &noticeLog{}
	var mu sync.Mutex
	var stopped []task.ID
	d := approval.NewDenials(approval.DenialsConfig{
		Threshold: 3, Window: time.Minute, Recorder: rec, Notifier: notes, Now: clk.now,
		Agent: func(context.Context, string) (string, string, error) {
			return "alice@example.com", "oncall@example.com", nil
		},
		Stop: func(_ context.Context, id task.ID, _ string) error {
			mu.Lock()
			defer mu.Unlock()
			stopped = append(stopped, id)
			return nil
		},
	})
	const a, b = task.ID("tsk_a"), task.ID("tsk_b")
	deny := func(id task.ID, n int) {
		for range n {
			d.Denied(id, "spiffe://example.org/agent/x")
			clk.add(time.Second)
		}
		d.Wait()
	}
	alarms := func() int { return rec.count(approval.TypeDenialsExceeded) }

	deny(a, 2)
	deny(b, 2)
	if n := alarms(); n != 0 {
		t.Fatalf("%d alarms after two denials each of two tasks, want none", n)
	}
	deny(a, 1)
	if n := alarms(); n != 1 {
		t.Fatalf("%d alarms after the third denial of one task, want 1", n)
	}
	deny(a, 5)
	if n := alarms(); n != 1 {
		t.Fatalf("%d alarms after more denials within the window, want still 1", n)
	}
	clk.add(2 * time.Minute)
	deny(a, 2)
	if n := alarms(); n != 1 {
		t.Fatalf("%d alarms after two denials in a new window, want still 1", n)
	}
	deny(a, 1)
	if n := alarms(); n != 2 {
		t.Fatalf("%d alarms after the third denial in a new window, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stopped) != 2 || stopped[0] != a || stopped[1] != a {
		t.Errorf("stopped %v, want task a twice", stopped)
	}
	notes.mu.Lock()
	defer notes.mu.Unlock()
	if len(notes.ns) != 2 || notes.ns[0].Kind != approval.NoticeDenials || notes.ns[0].Request.AgentOwner != "alice@example.com" ||
		notes.ns[0].Request.Escalation != "oncall@example.com" || notes.ns[0].Request.Task != a {
		t.Errorf("notices %+v, want two denials notices for task a to its owner", notes.ns)
	}
}
