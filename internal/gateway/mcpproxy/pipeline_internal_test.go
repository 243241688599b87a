package mcpproxy

import (
	"encoding/json"
	"strconv"
	"testing"
)

// TestToolAnnotationsMemo: the MCP decider's memo of decoded annotations
// gives what decoding each call's annotations gave (null decodes to empty
// annotations, not to none; JSON that does not decode gives none), and
// starts over when full.
func TestToolAnnotationsMemo(t *testing.T) {
	t.Parallel()
	d := &Pipeline{}
	for _, tc := range []struct {
		raw        string
		want, none bool
	}{
		{raw: `{"readOnlyHint":true}`, want: true},
		{raw: `null`},
		{raw: `{"readOnlyHint":"yes"}`, none: true},
		{raw: `{`, none: true},
	} {
		for range 2 {
			got := d.toolAnnotations(json.RawMessage(tc.raw))
			if tc.none != (got == nil) || got != nil && (got.ReadOnlyHint != nil) != tc.want {
				t.Errorf("toolAnnotations(%s) = %+v", tc.raw, got)
			}
		}
	}
	first := d.toolAnnotations(json.RawMessage(`{"readOnlyHint":true}`))
	if again := d.toolAnnotations(json.RawMessage(`{"readOnlyHint":true}`)); again != first {
		t.Error("toolAnnotations decoded the same annotations again")
	}
	for i := range maxMemoizedAnnotations + 1 {
		d.toolAnnotations(json.RawMessage(`{"title":"` + strconv.Itoa(i) + `"}`))
	}
	if n := d.memoized.Load(); n > maxMemoizedAnnotations {
		t.Errorf("memo holds %d annotations, over the bound of %d", n, maxMemoizedAnnotations)
	}
}
