package hook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// distinctKeys refuses a JSON object whose member names are not distinct
// when read case-insensitively: encoding/json matches a struct's fields
// that way (and keeps the last of duplicates), while the coding agent's
// own tools read their arguments by exact name, so {"command": "curl …",
// "Command": "ls"} would have mandate decide on one command and the agent
// run another. A tool's arguments are refused, not cleaned.
func distinctKeys(tool string, raw json.RawMessage) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("%s: tool_input is not an object", tool)
	}
	seen := map[string]string{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return fmt.Errorf("%s: tool_input: %v", tool, err)
		}
		k, _ := t.(string)
		folded := strings.ToLower(k)
		if prev, dup := seen[folded]; dup {
			return fmt.Errorf("%s: tool_input names %q and %q: one argument, two spellings (refused)", tool, prev, k)
		}
		seen[folded] = k
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return fmt.Errorf("%s: tool_input: %v", tool, err)
		}
	}
	return nil
}
