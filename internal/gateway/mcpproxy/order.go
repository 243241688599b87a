package mcpproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// msgCounter keeps relayed notifications in order with the responses they
// precede. The SDK delivers an upstream's responses directly but queues its
// notifications for a handler goroutine, so a tool's last progress or log
// notification could otherwise reach the downstream client after the
// tool's result (or be lost with the request's stream). The gateway counts
// such notifications as they are read off the wire (seen) and as they are
// relayed (handled); after each upstream call it waits, briefly, until
// every notification read before the result has been relayed.
type msgCounter struct {
	seen    atomic.Int64
	handled atomic.Int64
}

// maxBarrierWait bounds the wait for notifications to be relayed.
const maxBarrierWait = time.Second

// barrier waits until every counted notification read so far has been
// relayed.
func (c *msgCounter) barrier() {
	target := c.seen.Load()
	if c.handled.Load() >= target {
		return
	}
	deadline := time.Now().Add(maxBarrierWait)
	for c.handled.Load() < target && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
}

// relayedNotification reports whether the gateway relays method through a
// handler that counts it.
func relayedNotification(method string) bool {
	return method == "notifications/message" || method == "notifications/progress"
}

// countingReader counts relayed notifications in a stream of
// newline-delimited JSON messages (stdio) or SSE "data:" lines (HTTP).
type countingReader struct {
	r    io.Reader
	c    *msgCounter
	line []byte
}

// maxLine bounds the partial line kept between reads; longer lines are
// not notifications the gateway counts.
const maxLine = 1 << 20

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.scan(p[:n])
	return n, err
}

func (cr *countingReader) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(cr.line)+len(b) <= maxLine {
				cr.line = append(cr.line, b...)
			} else {
				cr.line = cr.line[:0]
			}
			return
		}
		line := b[:i]
		if len(cr.line) > 0 {
			line = append(cr.line, line...)
		}
		cr.check(line)
		cr.line = cr.line[:0]
		b = b[i+1:]
	}
}

var notificationsMarker = []byte("notifications/")

func (cr *countingReader) check(line []byte) {
	if !bytes.Contains(line, notificationsMarker) {
		return
	}
	line = bytes.TrimPrefix(bytes.TrimSpace(line), []byte("data:"))
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &m) == nil && m.ID == nil && relayedNotification(m.Method) {
		cr.c.seen.Add(1)
	}
}

// countingTransport wraps response bodies in countingReaders.
type countingTransport struct {
	base http.RoundTripper
	c    *msgCounter
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &countingBody{Reader: &countingReader{r: resp.Body, c: t.c}, Closer: resp.Body}
	return resp, nil
}

type countingBody struct {
	io.Reader
	io.Closer
}
