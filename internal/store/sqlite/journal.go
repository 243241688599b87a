package sqlite

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
)

// The ledger journal is an append-only file beside the database (its path
// plus journalSuffix) that holds the ledger's group commits until the
// indexer has copied them into the ledger tables (see ledgerindex.go).
//
// It is a sequence of frames, one per AppendLedger call:
//
//	frame   = length u32 | crc u32 | payload       (little-endian; crc is CRC-32C of payload)
//	payload = version 0x01 | size | hashStart | count | hash* | count | record*
//	record  = seq | time | type | agent | task | decision | data
//
// or, for a binding frame, payload = version 0x02 | binding u32, which
// holds the number the database file's header holds too (see bind.go);
// it is the first frame after every open and every reset.
//
// where size, hashStart, counts and seq are uvarints, time is a varint of
// Unix nanoseconds, hashes are 32 bytes each, and strings and data are a
// uvarint length followed by their bytes. A frame that is cut short or
// fails its CRC ends the journal: it is a write that a crash interrupted,
// whose events were never acknowledged. So does a length of zero: the
// file is allocated ahead of its frames, and reads as zeros past them.
//
// On Linux (journal_map_linux.go) appends copy frames into a shared
// memory mapping of that allocated space: the page cache then holds them, as it would after a write(2),
// without the system call, which on a lightly loaded machine cost more
// than the rest of a commit. Only a window of a chunk or so around the
// end is mapped, so that the pages a process counts as its own stay few
// however large the journal grows. Where the file system cannot allocate
// ahead or the file cannot be mapped, and on every other platform
// (journal_map_other.go), appends write.
const (
	journalSuffix  = "-ledger"
	journalVersion = 1
	bindingVersion = 2
	frameHeader    = 8
	// maxFrame bounds one frame's payload, and so what a damaged length
	// can make recovery allocate. A batch of audit.DefaultMaxBatch events
	// of a few kilobytes each is far below it.
	maxFrame = 64 << 20
)

// ErrLocked is returned by Open when another process (or another DB in
// this one) already has the database open: its ledger journal is locked.
var ErrLocked = errors.New("sqlite: the database is in use by another mandate process")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journal is the open journal file. It is not safe for concurrent use.
type journal struct {
	f    *os.File
	sync bool   // fsync each frame (WithSynchronousFull)
	size int64  // bytes of whole frames in the file
	buf  []byte // the frame being written, reused
	// m maps the file's bytes from mapOff (a page boundary at or before
	// size) to a chunk boundary past it: the last frames' pages, then
	// space allocated ahead (zeros). Nil until the first append after
	// open or reset, and for good once writes is set.
	m      []byte
	mapOff int64
	writes bool // the file system cannot allocate ahead or map: write
	// binding is the number of the last binding frame (0: none), which
	// reset writes again.
	binding uint32
}

// maxKeptBuffer is the largest frame buffer the journal keeps for the
// next append; a larger one (from an unusually large batch) is dropped.
const maxKeptBuffer = 1 << 20

// openJournal opens (creating with mode 0600) and locks the journal at
// path. The lock is held until close, so that no two processes append
// to one ledger.
func openJournal(path string, sync bool) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger journal: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
		}
		return nil, fmt.Errorf("ledger journal: lock %s: %w", path, err)
	}
	return &journal{f: f, sync: sync}, nil
}

// replay reads the journal's frames from the start, calling fn with each
// decoded batch in order. A frame cut short or failing its CRC ends the
// journal: replay truncates the file there. A frame that passes its CRC
// but cannot be decoded is an error (the file was written by something
// else). After replay, appends go to the end of the last whole frame.
func (j *journal) replay(fn func(*audit.Batch) error) error {
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("ledger journal: %w", err)
	}
	r := bufio.NewReaderSize(j.f, 1<<16)
	var off int64
	var hdr [frameHeader]byte
	for {
		payload, err := readFrame(r, hdr[:])
		if errors.Is(err, errTornFrame) {
			break
		}
		if err != nil {
			return fmt.Errorf("ledger journal: frame at byte %d: %w", off, err)
		}
		if id, ok := decodeBinding(payload); ok {
			j.binding = id
			off += frameHeader + int64(len(payload))
			continue
		}
		b, err := decodeBatch(payload)
		if err != nil {
			return fmt.Errorf("ledger journal: frame at byte %d: %w", off, err)
		}
		if err := fn(b); err != nil {
			return err
		}
		off += frameHeader + int64(len(payload))
	}
	if err := j.f.Truncate(off); err != nil {
		return fmt.Errorf("ledger journal: %w", err)
	}
	j.size = off // appends write at j.size
	return nil
}

// errTornFrame marks the end of the whole frames in a journal.
var errTornFrame = errors.New("torn frame")

// readFrame reads one frame's payload from r, using hdr as scratch.
func readFrame(r io.Reader, hdr []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, hdr[:frameHeader]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTornFrame
		}
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr)
	if n == 0 || n > maxFrame {
		return nil, errTornFrame
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTornFrame
		}
		return nil, err
	}
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
		return nil, errTornFrame
	}
	return payload, nil
}

// append adds b as one frame at the end of the journal, with one copy
// into the mapping (or one write), and syncs it if the journal is
// synchronous. If that fails the frame does not count: the next append
// goes in its place. A journal whose file is gone or cut short behind its
// back (a fault in the mapping) fails every append.
func (j *journal) append(b *audit.Batch) error {
	if j.f == nil {
		return errors.New("ledger journal: closed after a failed write")
	}
	frame, err := appendFrame(j.buf[:0], b)
	if err != nil {
		return err
	}
	if cap(frame) <= maxKeptBuffer {
		j.buf = frame
	}
	return j.put(frame)
}

// put writes frame at the end of the journal (see append).
func (j *journal) put(frame []byte) (err error) {
	if err := j.allocate(j.size + int64(len(frame))); err != nil {
		return err
	}
	if j.m != nil {
		err = j.copyFrame(frame)
	} else {
		err = j.writeFrame(frame)
	}
	if err != nil {
		return fmt.Errorf("ledger journal: %w", err)
	}
	j.size += int64(len(frame))
	return nil
}

// writeFrame writes frame at the end of the journal and, if synchronous,
// syncs the file; if that fails it cuts the file back to its last whole
// frame, and if even that fails the journal is unusable.
func (j *journal) writeFrame(frame []byte) error {
	_, err := j.f.WriteAt(frame, j.size)
	if err == nil && j.sync {
		err = j.f.Sync()
	}
	if err != nil {
		if terr := j.f.Truncate(j.size); terr != nil {
			j.f.Close()
			j.f = nil
			return fmt.Errorf("%w (and cutting back the partial write failed: %v)", err, terr)
		}
		return err
	}
	return nil
}

// reset empties the journal once everything in it is in the tables. The
// next append allocates (and maps) space again.
func (j *journal) reset() error {
	if j.f == nil {
		return errors.New("ledger journal: closed after a failed write")
	}
	j.unmap()
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("ledger journal: %w", err)
	}
	j.size = 0
	if j.binding != 0 {
		return j.put(bindingFrame(j.binding))
	}
	return nil
}

// bindingFrame returns the binding frame of id.
func bindingFrame(id uint32) []byte {
	frame := make([]byte, frameHeader+5)
	frame[frameHeader] = bindingVersion
	binary.BigEndian.PutUint32(frame[frameHeader+1:], id)
	binary.LittleEndian.PutUint32(frame, 5)
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(frame[frameHeader:], castagnoli))
	return frame
}

// decodeBinding decodes a binding frame's payload.
func decodeBinding(p []byte) (uint32, bool) {
	if len(p) != 5 || p[0] != bindingVersion {
		return 0, false
	}
	return binary.BigEndian.Uint32(p[1:]), true
}

// close releases the mapping, cuts the file back to its frames (the
// space allocated ahead is not kept), and releases the file and its lock.
func (j *journal) close() error {
	if j.f == nil {
		return nil
	}
	j.unmap()
	terr := j.f.Truncate(j.size)
	err := j.f.Close()
	j.f = nil
	return errors.Join(err, terr)
}

// appendFrame appends b as a journal frame to buf.
func appendFrame(buf []byte, b *audit.Batch) ([]byte, error) {
	n := frameHeader + 1 + 4*binary.MaxVarintLen64 + len(b.Hashes)*tlog.HashSize
	for _, r := range b.Records {
		n += 7*binary.MaxVarintLen64 + len(r.Type) + len(r.Agent) + len(r.Task) + len(r.Decision) + len(r.Data)
	}
	buf = slices.Grow(buf[:0], n)[:frameHeader]
	buf = append(buf, journalVersion)
	buf = binary.AppendUvarint(buf, uint64(b.Size))
	buf = binary.AppendUvarint(buf, uint64(b.HashStart))
	buf = binary.AppendUvarint(buf, uint64(len(b.Hashes)))
	for _, h := range b.Hashes {
		buf = append(buf, h[:]...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(b.Records)))
	for _, r := range b.Records {
		buf = binary.AppendUvarint(buf, uint64(r.Seq))
		buf = binary.AppendVarint(buf, r.Time.UnixNano())
		buf = appendString(buf, string(r.Type))
		buf = appendString(buf, r.Agent)
		buf = appendString(buf, r.Task)
		buf = appendString(buf, r.Decision)
		buf = binary.AppendUvarint(buf, uint64(len(r.Data)))
		buf = append(buf, r.Data...)
	}
	payload := len(buf) - frameHeader
	if payload > maxFrame {
		return nil, fmt.Errorf("%w: a batch of %d bytes is larger than the journal's %d-byte frames", audit.ErrInvalid, payload, maxFrame)
	}
	binary.LittleEndian.PutUint32(buf, uint32(payload))
	binary.LittleEndian.PutUint32(buf[4:], crc32.Checksum(buf[frameHeader:], castagnoli))
	return buf, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// decodeBatch decodes a frame's payload. Record data aliases p.
func decodeBatch(p []byte) (*audit.Batch, error) {
	d := decoder{p: p}
	if v := d.byte(); v != journalVersion {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("journal format version %d, want %d", v, journalVersion)
	}
	b := &audit.Batch{Size: d.int(), HashStart: d.int()}
	nh := d.count(tlog.HashSize)
	if d.err == nil {
		b.Hashes = make([]tlog.Hash, nh)
		for i := range b.Hashes {
			copy(b.Hashes[i][:], d.bytes(tlog.HashSize))
		}
	}
	// A record takes at least 7 bytes (seven empty or one-byte fields).
	nr := d.count(7)
	if d.err == nil {
		b.Records = make([]audit.Record, nr)
		for i := range b.Records {
			r := &b.Records[i]
			r.Seq = d.int()
			r.Time = time.Unix(0, d.varint()).UTC()
			r.Type = audit.Type(d.string())
			r.Agent = d.string()
			r.Task = d.string()
			r.Decision = d.string()
			r.Data = d.bytes(d.count(1))
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.p) != 0 {
		return nil, fmt.Errorf("%d bytes after the last record", len(d.p))
	}
	return b, nil
}

// decoder reads a payload, keeping the first error.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or malformed %s", what)
	}
	d.p = nil
}

func (d *decoder) byte() byte {
	if len(d.p) < 1 {
		d.fail("version")
		return 0
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.p = d.p[n:]
	return v
}

// int reads a uvarint that must fit an int64.
func (d *decoder) int() int64 {
	v := d.uvarint()
	if v > 1<<63-1 {
		d.fail("number")
		return 0
	}
	return int64(v)
}

// count reads a count of items of at least unit bytes each, which must fit
// in what is left.
func (d *decoder) count(unit int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.p)/unit) {
		d.fail("count")
		return 0
	}
	return int(v)
}

func (d *decoder) bytes(n int) []byte {
	if n > len(d.p) {
		d.fail("field")
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) string() string { return string(d.bytes(d.count(1))) }
