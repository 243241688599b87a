package sqlite

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
)

func codecBatch() *audit.Batch {
	t0 := time.Date(2026, 11, 27, 21, 0, 0, 123456789, time.UTC)
	return &audit.Batch{
		Size: 7, HashStart: 9,
		Hashes: []tlog.Hash{tlog.RecordHash([]byte("a")), tlog.RecordHash([]byte("b")), tlog.RecordHash([]byte("c"))},
		Records: []audit.Record{
			{Seq: 6, Time: t0, Type: audit.TypeActionDecided, Agent: "spiffe://example.org/agent/a", Task: "tsk_1", Decision: "allow", Data: []byte(`{"seq":6}`)},
			{Seq: 7, Time: t0.Add(-time.Hour), Type: audit.TypeTaskStarted, Data: []byte(`{"seq":7}`)},
		},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	want := codecBatch()
	frame, err := appendFrame(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := readFrame(bytes.NewReader(frame), make([]byte, frameHeader))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBatch(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodeBatch(appendFrame(nil, b)) =\n%+v\nwant\n%+v", got, want)
	}
}

// TestFrameDamage: any damage to a frame (a cut, a flipped bit) makes it
// a torn frame, never a different batch.
func TestFrameDamage(t *testing.T) {
	frame, err := appendFrame(nil, codecBatch())
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(frame) {
		if _, err := readFrame(bytes.NewReader(frame[:n]), make([]byte, frameHeader)); err != errTornFrame {
			t.Fatalf("frame cut to %d bytes: readFrame = %v, want a torn frame", n, err)
		}
	}
	for i := range len(frame) * 8 {
		bad := bytes.Clone(frame)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := readFrame(bytes.NewReader(bad), make([]byte, frameHeader)); err != errTornFrame {
			t.Fatalf("bit %d flipped: readFrame = %v, want a torn frame", i, err)
		}
	}
}

// FuzzDecodeBatch: decoding arbitrary payloads never panics, and what
// decodes re-encodes to the same payload.
func FuzzDecodeBatch(f *testing.F) {
	frame, err := appendFrame(nil, codecBatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(frame[frameHeader:])
	f.Add([]byte{journalVersion})
	f.Add([]byte{journalVersion, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := decodeBatch(payload)
		if err != nil {
			return
		}
		frame, err := appendFrame(nil, b)
		if err != nil {
			t.Fatalf("appendFrame(nil, decoded) = %v", err)
		}
		if !bytes.Equal(frame[frameHeader:], payload) {
			// Non-minimal varints decode but re-encode shorter; the
			// re-encoding must decode to the same batch.
			b2, err := decodeBatch(frame[frameHeader:])
			if err != nil || !reflect.DeepEqual(b, b2) {
				t.Fatalf("decode(encode(decode(p))) = %+v, %v; want %+v", b2, err, b)
			}
		}
		if crc32.Checksum(frame[frameHeader:], castagnoli) != binary.LittleEndian.Uint32(frame[4:]) {
			t.Fatal("encodeFrame wrote a wrong CRC")
		}
	})
}
