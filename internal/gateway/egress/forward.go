package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
)

// exchange is one allowed request (plain HTTP, or inside an intercepted
// tunnel) on its way through a forwarder (in its context).
type exchange struct {
	t     *target
	scrub *scrubber // the task's injected values, if any
	err   error     // what the forwarder failed with, if it did
}

type exchangeKey struct{}

// forward relays an allowed request to its upstream with fw, a
// net/http/httputil.ReverseProxy (hop-by-hop headers, Proxy-* among
// them, and X-Forwarded-* are not passed on), after replacing the
// placeholders of secrets delivered to its host (inject); the response
// is scrubbed of every value injected for the task. The outcome is
// recorded once the response is flushed to the client, without holding
// up its end (recordOutcomeAfter).
func (g *Gateway) forward(fw *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request, subj access.Subject, act access.Action, t *target, start time.Time) {
	if !g.inject(w, r, subj, act, t) {
		return
	}
	x := &exchange{t: t, scrub: g.scrubs.of(subj.Task)}
	cw := &countingWriter{ResponseWriter: w, scrub: x.scrub}
	var body *countingReader
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingReader{r: r.Body}
		r.Body = body
	}
	fw.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
	_ = http.NewResponseController(w).Flush()

	out := audit.Outcome{Status: outcomeOK, Bytes: cw.n, Duration: time.Since(start)}
	switch {
	case errors.Is(x.err, errAddressRefused), errors.Is(x.err, errUnscrubbable):
		out.Status, out.Error = outcomeRefused, x.err.Error()
	case x.err != nil:
		out.Status, out.Error = outcomeError, x.err.Error()
	}
	details := map[string]string{"status": strconv.Itoa(cw.statusCode())}
	if body != nil {
		details["bytes_sent"] = strconv.FormatInt(body.n, 10)
	}
	g.recordOutcomeAfter(r.Context(), subj, act, out, details)
}

// rewrite makes the upstream request from the canonical target alone:
// its URL and Host are the host that was decided, never the client's
// spelling or its Host header. No Proxy-* header is passed on; while
// the task has injected values, the response is asked for unencoded
// (identity), so that it can be scrubbed.
func rewrite(pr *httputil.ProxyRequest) {
	x := pr.In.Context().Value(exchangeKey{}).(*exchange)
	u := *x.t.url
	pr.Out.URL = &u
	pr.Out.Host = ""
	for k := range pr.Out.Header {
		if strings.HasPrefix(k, "Proxy-") {
			delete(pr.Out.Header, k)
		}
	}
	if x.scrub != nil {
		pr.Out.Header.Set("Accept-Encoding", "identity")
	}
}

// modifyResponse scrubs a response while the task has injected values:
// its body as it streams (its length then unknown in advance) and its
// trailers; its headers are scrubbed by countingWriter. A response whose
// body is encoded (compressed) cannot be searched and is cut.
func modifyResponse(resp *http.Response) error {
	x := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if x.scrub == nil {
		return nil
	}
	if ce := resp.Header.Values("Content-Encoding"); encoded(ce) {
		return fmt.Errorf("%w (Content-Encoding: %s)", errUnscrubbable, truncate(strings.Join(ce, ", "), 32))
	}
	resp.Body = x.scrub.reader(resp.Body, &resp.Trailer, resp.ContentLength)
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return nil
}

// encoded reports whether the Content-Encoding field values ce name any
// coding but identity: every value and every listed coding counts, not
// only the first field (a second "Content-Encoding: gzip" after an
// "identity" one is a compressed body all the same).
func encoded(ce []string) bool {
	for _, v := range ce {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return true
			}
		}
	}
	return false
}

// forwardError answers a request the forwarder could not relay: 403 for
// a refused address, 502 otherwise.
func (g *Gateway) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	x := r.Context().Value(exchangeKey{}).(*exchange)
	x.err = err
	if errors.Is(err, errUnscrubbable) {
		problem(w, http.StatusBadGateway, "response withheld", err.Error())
		return
	}
	var refused *refusedError
	if errors.As(err, &refused) {
		x.err = refused.err
		problem(w, http.StatusForbidden, "destination address refused", refused.err.Error())
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	problem(w, http.StatusBadGateway, "upstream unreachable", err.Error())
}

// refusedError carries an address refusal through net/http's transport,
// which wraps dial errors.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// dialForward is the forwarder's transport's dialer: addr is the
// canonical host and port the request was decided for (rewrite); it is
// resolved once, every address checked, and a checked address dialed.
func (g *Gateway) dialForward(ctx context.Context, _, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, err
	}
	t := &target{host: host, port: uint16(port)}
	addrs, err := g.resolve(ctx, t)
	if err != nil {
		if errors.Is(err, errAddressRefused) {
			return nil, &refusedError{err}
		}
		return nil, err
	}
	c, _, err := g.dialChecked(ctx, addrs, t.port)
	return c, err
}

// countingWriter counts the response bytes written and remembers the
// status; with scrub it scrubs the headers of every response head
// (informational ones included) as it is written.
type countingWriter struct {
	http.ResponseWriter
	scrub  *scrubber
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 || c.status < 200 {
		c.status = code
	}
	if c.scrub != nil {
		c.scrub.header(c.ResponseWriter.Header())
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) statusCode() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// countingReader counts the request body bytes read.
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// bufferPool reuses the forwarder's copy buffers (32 KiB each, otherwise
// allocated per request).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
