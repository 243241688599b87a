package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestWithSeqMatchesCanonical holds withSeq's splice to encoding the
// event with its seq, for seqs of every width, on the same buffer again
// and again as a commit retried after a conflict uses it.
func TestWithSeqMatchesCanonical(t *testing.T) {
	when := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	events := []Event{
		{Type: "mcp.call", Time: when},
		{Type: "mcp.call", Time: when, Agent: "spiffe://example.org/agent/a", Task: "t1", Decision: DecisionAllow,
			Args: json.RawMessage(`{"a":[1,2,{"b":"<&>"}]}`), Details: map[string]string{"z": "1", "a": "\u2028"}},
		{Type: "policy.reloaded", Time: when, V: 2},
	}
	seqs := []int64{1, 9, 10, 99999, 1 << 40, math.MaxInt64, 7}
	for _, ev := range events {
		data, err := canonical(&ev, seqRoom)
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range seqs {
			ev.Seq = seq
			got, err := withSeq(&ev, data)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(&ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("withSeq(v=%d, seq=%d) =\n%s\nwant\n%s", ev.V, seq, got, want)
			}
			if ev.V == 0 && &got[len(got)-1] != &data[len(data)-1] {
				t.Errorf("withSeq(%s, seq=%d) copied the event", ev.Type, seq)
			}
		}
		ev.Seq = 0
	}
}
