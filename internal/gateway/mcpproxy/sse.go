package mcpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// sseReader reads the data of server-sent events (HTML Living Standard,
// "Server-sent events", event stream interpretation): "data" fields are
// joined with newlines, comments and "event" fields are ignored, events
// without data are skipped, and the last event id and reconnection time
// are kept for resuming the stream. Lines end in LF or CRLF.
type sseReader struct {
	r    *bufio.Reader
	max  int // bound on one event's data
	line []byte
	data []byte
	// lastID is the last event id the stream set; retry the reconnection
	// time it asked for (zero if none).
	lastID string
	retry  time.Duration
}

// sseReaders keeps released readers: a stream is read for every relayed
// call an upstream answers with one, and a reader's buffer is 16 KB.
var sseReaders = sync.Pool{New: func() any { return &sseReader{r: bufio.NewReaderSize(nil, 16<<10)} }}

// maxKeptEventSize bounds the line and data buffers a released reader
// keeps for its next stream.
const maxKeptEventSize = 64 << 10

func newSSEReader(r io.Reader, maxEvent int) *sseReader {
	s := sseReaders.Get().(*sseReader)
	s.r.Reset(r)
	s.max = maxEvent
	return s
}

// release returns s for reuse by newSSEReader; neither s nor what it
// returned may be used after.
func (s *sseReader) release() {
	s.r.Reset(nil)
	if cap(s.line) > maxKeptEventSize || cap(s.data) > maxKeptEventSize {
		s.line, s.data = nil, nil
	}
	s.line, s.data = s.line[:0], s.data[:0]
	s.lastID, s.retry = "", 0
	sseReaders.Put(s)
}

// resume continues reading on r: the same stream, reopened after its last
// event id. The last id and the reconnection time carry over.
func (s *sseReader) resume(r io.Reader) { s.r.Reset(r) }

// errEventTooLarge reports an event whose data exceeds the reader's bound.
var errEventTooLarge = errors.New("server-sent event too large")

// next returns the data of the next event that has any; io.EOF at the end
// of the stream (an unterminated last event is discarded, as the standard
// says). The result is valid until the next call.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	has := false
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if has && len(s.data) > 0 {
				return s.data, nil
			}
			has = false
			s.data = s.data[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.lastID = string(value)
			}
			continue
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 32); err == nil {
				s.retry = time.Duration(ms) * time.Millisecond
			}
			continue
		case "data":
		default:
			continue
		}
		if has {
			s.data = append(s.data, '\n')
		}
		s.data = append(s.data, value...)
		has = true
		if len(s.data) > s.max {
			return nil, fmt.Errorf("%w: more than %d bytes", errEventTooLarge, s.max)
		}
	}
}

// readLine returns the next line without its terminator.
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > s.max+64 {
			return nil, fmt.Errorf("%w: a line of more than %d bytes", errEventTooLarge, s.max)
		}
		switch {
		case err == nil:
			l := s.line[:len(s.line)-1]
			return bytes.TrimSuffix(l, []byte("\r")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(s.line) > 0:
			// A last line without a terminator ends no event.
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}
