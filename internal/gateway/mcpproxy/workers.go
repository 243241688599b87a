package mcpproxy

import (
	"context"
	"time"
)

// background runs f with a bounded context, in a goroutine the gateway's
// Close waits for.
func (g *Gateway) background(f func(context.Context)) {
	g.async(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), 5*time.Second)
		defer cancel()
		f(ctx)
	})
}

// async runs f in a goroutine that Close waits for; once Close has begun,
// it runs f at once instead. The goroutine is one that an earlier f ran
// in, if one is waiting: recording a call's outcome in the ledger runs
// deep enough that a new goroutine's stack grows, and is copied, once or
// twice on every call, where a reused one has grown already.
func (g *Gateway) async(f func()) {
	if !g.enter() {
		f()
		return
	}
	select {
	case g.idle <- f:
	default:
		g.workers.Add(1)
		go g.work(f)
	}
}

// maxIdleWorkers bounds the goroutines waiting for async's work: about
// the calls whose outcomes are being recorded at once at full load.
const maxIdleWorkers = 128

// work runs f, then waits for more from async while no more than
// maxIdleWorkers goroutines wait, until Close.
func (g *Gateway) work(f func()) {
	defer g.workers.Done()
	for {
		f()
		g.wg.Done()
		if g.waiting.Add(1) > maxIdleWorkers {
			g.waiting.Add(-1)
			return
		}
		select {
		case f = <-g.idle:
			g.waiting.Add(-1)
		case <-g.ctx.Done():
			g.waiting.Add(-1)
			return
		}
	}
}

// enter registers work that Close waits for (the caller calls g.wg.Done
// when it ends); it reports false once Close has begun.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return false
	}
	g.wg.Add(1)
	return true
}
