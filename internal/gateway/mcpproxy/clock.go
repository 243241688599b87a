package mcpproxy

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ClientAnswerTimeout bounds how long a call waits while its upstream
// waits for the downstream client to answer a request (sampling,
// elicitation, roots). That time does not count against the call timeout:
// a person may take minutes to answer an elicitation, and that is not the
// upstream hanging.
const ClientAnswerTimeout = 10 * time.Minute

// errCallTimeout is the cause of a call context that its clock ended.
var errCallTimeout = errors.New("call timed out")

// callClock ends a call (cancelling its context with errCallTimeout) once
// the upstream has had it for its timeout, not counting the time spent
// waiting for the downstream client; while the client is being asked, the
// call ends only if the client takes longer than ClientAnswerTimeout.
type callClock struct {
	mu     sync.Mutex
	t      *time.Timer
	left   time.Duration // upstream time left at the last pause
	since  time.Time     // when the running period began
	paused bool
}

// pause stops counting upstream time. The caller holds the session's
// clocks lock, so pauses and resumes of one clock alternate.
func (c *callClock) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.Stop() {
		c.left -= time.Since(c.since)
		c.paused = true
		c.t.Reset(ClientAnswerTimeout)
	}
}

// resume counts upstream time again.
func (c *callClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused && c.t.Stop() {
		c.paused = false
		c.since = time.Now()
		c.t.Reset(max(c.left, 0))
	}
}

// clocks are the clocks of a session's calls in flight, paused together
// while the session's client is being asked something: the relayed
// request may come from any of them (or, through the Go SDK, from an
// upstream that does not say which call it is for).
type clocks struct {
	mu     sync.Mutex
	asking int // upstream requests relayed to the client and not yet answered
	set    map[*callClock]struct{}
}

// startClock starts the clock of a call that may run for d of upstream
// time and returns the call's context and a stop function that releases
// the clock and the context. Whether the context ended for the clock is
// told by timedOut.
func (s *session) startClock(ctx context.Context, d time.Duration) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	c := &callClock{left: d, since: time.Now()}
	s.clocks.mu.Lock()
	if s.clocks.set == nil {
		s.clocks.set = map[*callClock]struct{}{}
	}
	c.mu.Lock()
	c.t = time.AfterFunc(d, func() { cancel(errCallTimeout) })
	c.mu.Unlock()
	s.clocks.set[c] = struct{}{}
	if s.clocks.asking > 0 {
		c.pause()
	}
	s.clocks.mu.Unlock()
	return cctx, func() {
		s.clocks.mu.Lock()
		delete(s.clocks.set, c)
		s.clocks.mu.Unlock()
		c.mu.Lock()
		c.t.Stop()
		c.mu.Unlock()
		cancel(context.Canceled)
	}
}

// timedOut reports whether a call context from startClock ended because
// its clock ran out.
func timedOut(cctx context.Context) bool {
	return errors.Is(context.Cause(cctx), errCallTimeout)
}

// asking records that an upstream request was relayed to the client: the
// session's calls stop counting upstream time until it is answered.
func (s *session) asking() {
	s.clocks.mu.Lock()
	defer s.clocks.mu.Unlock()
	s.clocks.asking++
	if s.clocks.asking == 1 {
		for c := range s.clocks.set {
			c.pause()
		}
	}
}

// answered records that a relayed request was answered (or will never
// be: it was cancelled, or its call ended).
func (s *session) answered() {
	s.clocks.mu.Lock()
	defer s.clocks.mu.Unlock()
	s.clocks.asking--
	if s.clocks.asking == 0 {
		for c := range s.clocks.set {
			c.resume()
		}
	}
}
