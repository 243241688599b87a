package wire

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

// EventReader reads the data of server-sent events (HTML Living Standard,
// "Server-sent events", event stream interpretation): "data" fields are
// joined with newlines, comments and "event" fields are ignored, events
// without data are skipped, and the last event id and reconnection time
// are kept for resuming the stream. Lines end in LF or CRLF.
type EventReader struct {
	r    *bufio.Reader
	max  int // bound on one event's data
	line []byte
	data []byte
	// lastID is the last event id the stream set; retry the reconnection
	// time it asked for (zero if none).
	lastID string
	retry  time.Duration
}

// eventReaders keeps released readers: a stream is read for every relayed
// call an upstream answers with one, and a reader's buffer is 16 KB.
var eventReaders = sync.Pool{New: func() any { return &EventReader{r: bufio.NewReaderSize(nil, 16<<10)} }}

// maxKeptEventSize bounds the line and data buffers a released reader
// keeps for its next stream.
const maxKeptEventSize = 64 << 10

// NewEventReader returns a reader of the event stream r whose events'
// data are at most maxEvent bytes (see ErrEventTooLarge). The caller
// releases it when done.
func NewEventReader(r io.Reader, maxEvent int) *EventReader {
	s := eventReaders.Get().(*EventReader)
	s.r.Reset(r)
	s.max = maxEvent
	return s
}

// Release returns s for reuse by NewEventReader; neither s nor what it
// returned may be used after.
func (s *EventReader) Release() {
	s.r.Reset(nil)
	if cap(s.line) > maxKeptEventSize || cap(s.data) > maxKeptEventSize {
		s.line, s.data = nil, nil
	}
	s.line, s.data = s.line[:0], s.data[:0]
	s.lastID, s.retry = "", 0
	eventReaders.Put(s)
}

// Resume continues reading on r: the same stream, reopened after its last
// event id. The last id and the reconnection time carry over.
func (s *EventReader) Resume(r io.Reader) { s.r.Reset(r) }

// LastID is the last event id the stream set ("" if none): where to
// resume it.
func (s *EventReader) LastID() string { return s.lastID }

// Retry is the reconnection time the stream asked for (zero if none).
func (s *EventReader) Retry() time.Duration { return s.retry }

// ErrEventTooLarge reports an event whose data exceeds the reader's bound.
var ErrEventTooLarge = errors.New("server-sent event too large")

// Next returns the data of the next event that has any; io.EOF at the end
// of the stream (an unterminated last event is discarded, as the standard
// says). The result is valid until the next call.
func (s *EventReader) Next() ([]byte, error) {
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
			return nil, fmt.Errorf("%w: more than %d bytes", ErrEventTooLarge, s.max)
		}
	}
}

// readLine returns the next line without its terminator.
func (s *EventReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		s.line = append(s.line, chunk...)
		if len(s.line) > s.max+64 {
			return nil, fmt.Errorf("%w: a line of more than %d bytes", ErrEventTooLarge, s.max)
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
