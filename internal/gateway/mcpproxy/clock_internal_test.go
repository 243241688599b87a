package mcpproxy

import (
	"context"
	"testing"
	"time"
)

// TestCallClock: a call's clock counts only the time nobody is asking the
// client something; calls started while the client is being asked start
// paused.
func TestCallClock(t *testing.T) {
	s := &session{}
	ctx, stop := s.startClock(context.Background(), 150*time.Millisecond)
	defer stop()
	time.Sleep(50 * time.Millisecond)
	s.asking()
	late, stopLate := s.startClock(context.Background(), 50*time.Millisecond)
	defer stopLate()
	time.Sleep(300 * time.Millisecond)
	if ctx.Err() != nil || late.Err() != nil {
		t.Fatalf("while the client is asked: %v, %v; want both calls running", ctx.Err(), late.Err())
	}
	s.answered()
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the clock did not resume")
	}
	if !timedOut(ctx) || !timedOut(late) {
		t.Errorf("timedOut = %v, %v; want both", timedOut(ctx), timedOut(late))
	}
	other, stopOther := s.startClock(context.Background(), time.Hour)
	stopOther()
	if other.Err() == nil || timedOut(other) {
		t.Errorf("a stopped clock's context: %v, timed out %v; want cancelled, not timed out", other.Err(), timedOut(other))
	}
}
