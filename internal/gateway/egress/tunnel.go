package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// tunnel carries out an allowed CONNECT: the host is resolved once and
// checked, a checked address dialed, and only then is the client told
// 200 and its connection spliced to the upstream's. The outcome (bytes
// each way, duration, how it ended) is recorded when the tunnel closes.
// A tunnel lives no longer than its task: watchTunnels closes it when
// the task ends or is revoked.
func (g *Gateway) tunnel(w http.ResponseWriter, r *http.Request, subj access.Subject, act access.Action, t *target, start time.Time) {
	ctx := r.Context()
	addrs, err := g.resolve(ctx, t)
	if err != nil {
		status, title, outcome := http.StatusBadGateway, "upstream unreachable", outcomeError
		if errors.Is(err, errAddressRefused) {
			status, title, outcome = http.StatusForbidden, "destination address refused", outcomeRefused
		}
		g.recordOutcome(ctx, subj, act, audit.Outcome{Status: outcome, Error: err.Error(), Duration: time.Since(start)}, nil)
		problem(w, status, title, err.Error())
		return
	}
	intercept := g.cfg.Intercept.Match(t.host)
	var up net.Conn
	var ap netip.AddrPort
	if !intercept {
		// An intercepted tunnel connects when its first request is
		// allowed: a denied one never reaches the host.
		if up, ap, err = g.dialChecked(ctx, addrs, t.port); err != nil {
			g.recordOutcome(ctx, subj, act, audit.Outcome{Status: outcomeError, Error: err.Error(), Duration: time.Since(start)}, nil)
			problem(w, http.StatusBadGateway, "upstream unreachable", err.Error())
			return
		}
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		if up != nil {
			_ = up.Close()
		}
		g.recordOutcome(ctx, subj, act, audit.Outcome{Status: outcomeError, Error: err.Error(), Duration: time.Since(start)}, nil)
		problem(w, http.StatusInternalServerError, "tunnel failed", "the connection cannot be taken over")
		return
	}
	_ = client.SetDeadline(time.Time{}) // the server's header deadline
	if intercept {
		g.intercept(client, brw, r, subj, act, t, addrs, start)
		return
	}
	tc := newTunnelConn(client, up, r, subj, act)
	if !g.tunnels.add(tc) {
		_ = client.Close()
		_ = up.Close()
		return
	}
	defer g.tunnels.remove(tc)

	var sent, received int64
	var firstErr error
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		firstErr = err
	} else {
		// Bytes the client sent after its CONNECT (a TLS ClientHello)
		// that the server already read.
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			m, err := up.Write(b)
			sent += int64(m)
			firstErr = err
		}
		if firstErr == nil {
			sent2, recv, err := splice(client, up)
			sent, received, firstErr = sent+sent2, recv, err
		}
	}
	_ = client.Close()
	_ = up.Close()

	out := audit.Outcome{Status: outcomeOK, Bytes: received, Duration: time.Since(start)}
	if reason := tc.closedBy(); reason != "" {
		out.Status, out.Error = outcomeClosed, reason
	} else if firstErr != nil {
		out.Status, out.Error = outcomeError, firstErr.Error()
	}
	g.recordOutcome(ctx, subj, act, out, map[string]string{
		"status": "200", "bytes_sent": strconv.FormatInt(sent, 10), "address": ap.String(),
	})
}

// splice copies both ways until both directions end. A direction that
// ends cleanly is passed on as a half close; one that fails closes the
// tunnel (the other side would otherwise wait forever).
func splice(client, up net.Conn) (sent, received int64, err error) {
	var wg sync.WaitGroup
	var upErr error
	wg.Go(func() {
		sent, upErr = io.Copy(up, client)
		if upErr != nil {
			_, _ = client.Close(), up.Close()
			return
		}
		closeWrite(up)
	})
	received, err = io.Copy(client, up)
	if err != nil {
		_, _ = client.Close(), up.Close()
	} else {
		closeWrite(client)
	}
	wg.Wait()
	// One side had finished and closed its socket when the other's last
	// bytes (a TLS close_notify, say) reached it: a reset in one direction
	// after the other ended cleanly is the tunnel's end, not a failure.
	switch {
	case upErr == nil && reset(err):
		err = nil
	case err == nil && reset(upErr):
		upErr = nil
	}
	if err == nil {
		err = upErr
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed by us: the other direction failed, or watchTunnels
	}
	return sent, received, err
}

// reset reports a connection reset or broken pipe.
func reset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

func agentsOf(subj access.Subject) []string {
	if subj.Claims != nil {
		if chain := subj.Claims.Act.Chain(); len(chain) > 0 {
			return chain
		}
	}
	return []string{subj.Agent}
}

// tunnelConn is an open tunnel and the task it was allowed for.
type tunnelConn struct {
	client, upstream net.Conn
	task             task.ID
	agents           []string
	// cred is the task token the CONNECT was authenticated with, act the
	// CONNECT; expiry is the token's. Until the token expires, the tunnel
	// is closed as soon as the token is refused (revoked).
	cred   access.Credential
	act    access.Action
	expiry time.Time

	mu     sync.Mutex
	reason string // why the proxy closed it, if it did
}

// newTunnelConn is the tunnel of the CONNECT r (authenticated as subj,
// allowed as act) between client and upstream (nil when intercepted).
func newTunnelConn(client, upstream net.Conn, r *http.Request, subj access.Subject, act access.Action) *tunnelConn {
	c := &tunnelConn{client: client, upstream: upstream, task: subj.Task, agents: agentsOf(subj), act: act}
	if pres, err := proxyCredential(r.Header); err == nil {
		c.cred = access.Credential{Token: pres.Token, Scheme: pres.Scheme}
	}
	if subj.Claims != nil && subj.Claims.Expiry != nil {
		c.expiry = subj.Claims.Expiry.Time()
	}
	return c
}

// tokenRefused reports whether the tunnel's token, not yet expired, is
// refused now (revoked): the pipeline records why (once: a tunnel being
// closed is not checked again). An expired token is
// not checked (it would be refused at every look): a tunnel outlives its
// token, not its task.
func (g *Gateway) tokenRefused(c *tunnelConn, now time.Time) bool {
	if c.cred.Token == "" || c.closedBy() != "" || !now.Add(tokenCheckMargin).Before(c.expiry) {
		return false
	}
	_, err := g.cfg.Pipeline.Authenticate(context.Background(), c.cred, c.act)
	return errors.Is(err, access.ErrUnauthenticated)
}

// tokenCheckMargin: a token this close to its expiry is no longer
// checked by watchTunnels, so that its expiry is not read as a
// revocation.
const tokenCheckMargin = 2 * liveCheckInterval

func (c *tunnelConn) close(reason string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.mu.Unlock()
	_ = c.client.Close()
	if c.upstream != nil { // nil for an intercepted tunnel
		_ = c.upstream.Close()
	}
}

func (c *tunnelConn) closedBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// add registers an open tunnel; false once the proxy is shutting down.
func (ts *tunnels) add(c *tunnelConn) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = make(map[*tunnelConn]struct{})
	}
	if ts.closed {
		return false
	}
	ts.m[c] = struct{}{}
	ts.wg.Add(1)
	return true
}

func (ts *tunnels) remove(c *tunnelConn) {
	ts.mu.Lock()
	delete(ts.m, c)
	ts.mu.Unlock()
	ts.wg.Done()
}

// closeAll closes every open tunnel and refuses new ones.
func (ts *tunnels) closeAll(reason string) {
	ts.mu.Lock()
	ts.closed = true
	open := make([]*tunnelConn, 0, len(ts.m))
	for c := range ts.m {
		open = append(open, c)
	}
	ts.mu.Unlock()
	for _, c := range open {
		c.close(reason)
	}
}

func (ts *tunnels) wait() { ts.wg.Wait() }

// watchTunnels closes, every liveCheckInterval, the tunnels whose task or
// agents are no longer active, until stop is closed.
func (g *Gateway) watchTunnels(stop <-chan struct{}) {
	tick := time.NewTicker(liveCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		g.tunnels.mu.Lock()
		var ended, open []*tunnelConn
		for c := range g.tunnels.m {
			if !g.cfg.Pipeline.Active(c.task, c.agents) {
				ended = append(ended, c)
			} else {
				open = append(open, c)
			}
		}
		g.tunnels.mu.Unlock()
		for _, c := range ended {
			c.close("the task is no longer active")
		}
		now := time.Now()
		for _, c := range open {
			if g.tokenRefused(c, now) {
				c.close("the task token is no longer accepted")
			}
		}
		g.scrubs.prune(g.cfg.Pipeline.Active)
	}
}
