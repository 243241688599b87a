package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckJSONText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"a":"b"}`, true},
		{`{"a":"é日本🙂\ufffd"}`, true},
		{`"\ud83d\ude42"`, true}, // 🙂 as a surrogate pair
		{`"\uD83D\uDE42"`, true},
		{`"\\ud800"`, true}, // an escaped backslash, then text
		{`"\u00e9\n\"\\"`, true},
		{`{"\ud800":1}`, false},
		{`"\ud800"`, false},
		{`"\udc00"`, false},
		{`"\ud800x"`, false},
		{`"\ud800\n"`, false},
		{`"\ud800\ud800"`, false},
		{`"\ude42\ud83d"`, false},
		{`"a\ud83d"`, false},
		{"\"\xff\"", false},
		{"{\"a\":\"id-\xff\xfe\"}", false},
		{"\"\xed\xa0\x80\"", false}, // a surrogate encoded in UTF-8
		{`"\u12"`, true},            // malformed: left to the decoder
	} {
		err := checkJSONText([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("checkJSONText(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if status, _ := errorStatus(err); err != nil && status != 400 {
			t.Errorf("checkJSONText(%q) error maps to %d, want 400", tc.in, status)
		}
	}
}

// FuzzCheckJSONText: a text checkJSONText accepts decodes to strings in
// which every U+FFFD was sent (as the character or its escape), never one
// the decoder put in place of something else.
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `"\ud83d\ude42"`, `"\ud800"`, "\"\xff\"", `"\\ud800"`, `["\uFFFD","\ufffd","` + "\uFFFD" + `"]`, `"\u12"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkJSONText(b) != nil {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		sent := bytes.Count(b, []byte("\uFFFD")) + bytes.Count(bytes.ToLower(b), []byte(`\ufffd`))
		if got := countReplacement(v); got > sent {
			t.Fatalf("checkJSONText accepted %q, which decodes with %d U+FFFD, %d of them sent", b, got, sent)
		}
	})
}

func countReplacement(v any) int {
	n := 0
	switch v := v.(type) {
	case string:
		n = strings.Count(v, "\uFFFD")
	case []any:
		for _, e := range v {
			n += countReplacement(e)
		}
	case map[string]any:
		for k, e := range v {
			n += strings.Count(k, "\uFFFD") + countReplacement(e)
		}
	}
	return n
}

// TestAuthZENRequestID: a request ID of 1 to 128 visible ASCII
// characters is echoed and decided with; any other is refused with 400
// before anything is decided (so nothing about it is recorded).
func TestAuthZENRequestID(t *testing.T) {
	t.Parallel()
	srv, f := newAuthZENServer(t)
	body := `{` + subj + `, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "ok"}}`
	for _, tc := range []struct {
		name, id string
		want     int
	}{
		{"uuid", "0b6d1c5e-8f4a-4d7e-9a3b-2c1d0e9f8a7b", 200},
		{"visible ASCII", "Root=1-5759e988;Parent=53995c3f~!", 200},
		{"128 bytes", strings.Repeat("r", MaxRequestIDLen), 200},
		{"invalid UTF-8", "id-\xff\xfe", 400},
		{"UTF-8 but not ASCII", "id-é", 400},
		{"space", "id 1", 400},
		{"tab", "id\t1", 400},
		{"129 bytes", strings.Repeat("r", MaxRequestIDLen+1), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			before := len(f.acts)
			f.mu.Unlock()
			resp, got := post(t, srv, "/access/v1/evaluation", "Bearer good", body, map[string]string{"X-Request-ID": tc.id})
			if resp.StatusCode != tc.want {
				t.Fatalf("X-Request-ID %q: status %d (%s), want %d", tc.id, resp.StatusCode, got, tc.want)
			}
			f.mu.Lock()
			acts := f.acts[before:]
			f.mu.Unlock()
			if tc.want != 200 {
				if len(acts) != 0 || resp.Header.Get("X-Request-ID") != "" {
					t.Errorf("refused X-Request-ID %q: %d decisions, echoed %q; want none", tc.id, len(acts), resp.Header.Get("X-Request-ID"))
				}
				return
			}
			if resp.Header.Get("X-Request-ID") != tc.id || len(acts) != 1 || acts[0].RequestID != tc.id {
				t.Errorf("X-Request-ID %q: echoed %q, decided %+v", tc.id, resp.Header.Get("X-Request-ID"), acts)
			}
		})
	}
}
