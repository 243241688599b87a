package egress

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/mandatehq/mandate/internal/task"
)

// Scrubbing limits.
const (
	// scrubChunk is how much of a response body is read at a time.
	scrubChunk = 32 << 10
	// maxScrubbedPerTask bounds the distinct values injected for one task
	// (each is searched for in every response to it).
	maxScrubbedPerTask = 64
)

// errUnscrubbable cuts a response that cannot be searched for the
// injected values (a compressed body).
var errUnscrubbable = errors.New("the response cannot be searched for the secrets injected into this task's requests (its body is encoded); it is not relayed")

// scrubber replaces injected values in what the proxy relays to the
// client with the placeholder naming their secret: each value as it is,
// and as JSON and URL encodings write it. Matching is leftmost, longest
// first. It is immutable.
type scrubber struct {
	forms  [][]byte // longest first
	repl   [][]byte
	maxLen int
	// lower are the forms in lower case, for header names (which the
	// transport has canonicalised: their case is not the upstream's).
	lower [][]byte
}

// newScrubber returns the scrubber of values (value → secret name), or
// nil for none.
func newScrubber(values map[string]string) *scrubber {
	if len(values) == 0 {
		return nil
	}
	type pair struct{ form, repl []byte }
	var ps []pair
	for v, name := range values {
		repl := []byte(placeholderPrefix + name + "]")
		enc, _ := json.Marshal(v)
		for _, f := range []string{v, string(enc[1 : len(enc)-1]), url.QueryEscape(v), url.PathEscape(v)} {
			if !slices.ContainsFunc(ps, func(p pair) bool { return string(p.form) == f }) {
				ps = append(ps, pair{[]byte(f), repl})
			}
		}
	}
	slices.SortStableFunc(ps, func(a, b pair) int {
		if c := len(b.form) - len(a.form); c != 0 {
			return c
		}
		return bytes.Compare(a.form, b.form)
	})
	s := &scrubber{}
	for _, p := range ps {
		s.forms = append(s.forms, p.form)
		s.repl = append(s.repl, p.repl)
		s.lower = append(s.lower, bytes.ToLower(p.form))
	}
	s.maxLen = len(s.forms[0])
	return s
}

// next returns the leftmost occurrence in b of a form, the longest at
// that position: its index and form number, or -1.
func (s *scrubber) next(b []byte) (int, int) {
	at, which := -1, -1
	for i, f := range s.forms {
		if j := bytes.Index(b, f); j >= 0 && (at < 0 || j < at) {
			at, which = j, i
		}
	}
	return at, which
}

// scrub appends to out the scrubbed in, up to where it can tell: with
// final false it keeps back the bytes a form could still start in, and
// returns them as rest.
func (s *scrubber) scrub(out, in []byte, final bool) (_, rest []byte) {
	limit := len(in)
	if !final {
		// Every form starting before limit lies entirely in in.
		limit = max(0, len(in)-(s.maxLen-1))
	}
	i := 0
	for {
		at, which := s.next(in[i:])
		if at < 0 || i+at >= limit {
			break
		}
		out = append(out, in[i:i+at]...)
		out = append(out, s.repl[which]...)
		i += at + len(s.forms[which])
	}
	end := max(i, limit)
	return append(out, in[i:end]...), in[end:]
}

// replaceAll returns b scrubbed.
func (s *scrubber) replaceAll(b []byte) []byte {
	out, _ := s.scrub(nil, b, true)
	return out
}

// header scrubs every value of h in place, and drops a field whose name
// holds a value (in any case: a name cannot hold the placeholder).
func (s *scrubber) header(h http.Header) {
	for k, vs := range h {
		if s.inName(k) {
			delete(h, k)
			continue
		}
		for i, v := range vs {
			if _, w := s.next([]byte(v)); w >= 0 {
				h[k][i] = string(s.replaceAll([]byte(v)))
			}
		}
	}
}

// inName reports whether the header name k holds a form, in any case.
func (s *scrubber) inName(k string) bool {
	lk := bytes.ToLower([]byte(k))
	for _, f := range s.lower {
		if bytes.Contains(lk, f) {
			return true
		}
	}
	return false
}

// scrubReader is a response body scrubbed as it streams: at most
// scrubChunk plus the longest form's length is buffered. At the end of
// the body, trailer (filled by the transport then) is scrubbed too.
type scrubReader struct {
	s       *scrubber
	src     io.ReadCloser
	trailer *http.Header
	buf     []byte
	in, out []byte
	err     error
}

// reader returns src scrubbed; length is the body's length if known
// (else -1): a short body gets a buffer of its size, not scrubChunk.
func (s *scrubber) reader(src io.ReadCloser, trailer *http.Header, length int64) *scrubReader {
	r := &scrubReader{s: s, src: src, trailer: trailer}
	if length >= 0 && length < scrubChunk {
		r.buf = make([]byte, max(length+1, 512))
	}
	return r
}

func (r *scrubReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.buf == nil {
			r.buf = make([]byte, scrubChunk)
		}
		n, err := r.src.Read(r.buf)
		r.in = append(r.in, r.buf[:n]...)
		if err != nil {
			r.err = err
			if err == io.EOF && r.trailer != nil && *r.trailer != nil {
				r.s.header(*r.trailer)
			}
		}
		var rest []byte
		r.out, rest = r.s.scrub(r.out[:0], r.in, r.err != nil)
		r.in = append(r.in[:0], rest...)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *scrubReader) Close() error { return r.src.Close() }

// scrubs are the values injected into each task's requests: every
// response to that task, from any host, is scrubbed of them until the
// task ends (a host may echo a value later, in another request).
type scrubs struct {
	mu sync.Mutex
	m  map[task.ID]*taskValues
}

type taskValues struct {
	agents []string
	values map[string]string // value → secret name
	s      *scrubber         // built from values
}

// add remembers value (of secret name) for task; false when the task has
// maxScrubbedPerTask values already.
func (ss *scrubs) add(id task.ID, agents []string, name, value string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[task.ID]*taskValues{}
	}
	tv := ss.m[id]
	if tv == nil {
		tv = &taskValues{agents: agents, values: map[string]string{}}
		ss.m[id] = tv
	}
	if _, ok := tv.values[value]; ok {
		return true
	}
	if len(tv.values) >= maxScrubbedPerTask {
		return false
	}
	tv.values[value] = name
	tv.s = newScrubber(tv.values)
	return true
}

// of returns task id's scrubber, nil when nothing was injected for it.
func (ss *scrubs) of(id task.ID) *scrubber {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if tv := ss.m[id]; tv != nil {
		return tv.s
	}
	return nil
}

// prune forgets the tasks active reports ended.
func (ss *scrubs) prune(active func(task.ID, []string) bool) {
	ss.mu.Lock()
	tasks := make(map[task.ID][]string, len(ss.m))
	for id, tv := range ss.m {
		tasks[id] = tv.agents
	}
	ss.mu.Unlock()
	for id, agents := range tasks {
		if !active(id, agents) {
			ss.mu.Lock()
			delete(ss.m, id)
			ss.mu.Unlock()
		}
	}
}
