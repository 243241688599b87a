package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	"github.com/mandatehq/mandate/internal/audit"
)

// The approval page compares a request's arguments with those of earlier
// approvals of the same tool: key by key over the top-level JSON objects,
// each value compared in canonical form (audit.CanonicalJSON: key order
// and whitespace make no difference). Arguments that are not a JSON object are
// compared as one value under the key "" (shown as "(the arguments)").

// Kinds of a diff row.
const (
	diffSame    = "same"
	diffChanged = "changed"
	diffAdded   = "added"
	diffRemoved = "removed"
)

// diffRow is one key: its kind and the earlier and current values
// (canonical JSON; empty when absent).
type diffRow struct {
	Key, Kind, Was, Now string
}

// maxDiffRows bounds the rows of one diff (arguments may have many keys;
// the page says when it stops).
const maxDiffRows = 200

// errNotJSON: one side of a diff is not JSON.
var errNotJSON = errors.New("the arguments are not JSON")

// diffArguments compares earlier with now. It returns the rows, sorted by
// key, and whether rows were left off past maxDiffRows.
func diffArguments(earlier, now []byte) ([]diffRow, bool, error) {
	was, err := topLevel(earlier)
	if err != nil {
		return nil, false, err
	}
	cur, err := topLevel(now)
	if err != nil {
		return nil, false, err
	}
	keys := make([]string, 0, len(was)+len(cur))
	for k := range was {
		keys = append(keys, k)
	}
	for k := range cur {
		if _, ok := was[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	more := len(keys) > maxDiffRows
	if more {
		keys = keys[:maxDiffRows]
	}
	rows := make([]diffRow, 0, len(keys))
	for _, k := range keys {
		w, inWas := was[k]
		n, inNow := cur[k]
		row := diffRow{Key: k, Was: w, Now: n}
		switch {
		case !inWas:
			row.Kind = diffAdded
		case !inNow:
			row.Kind = diffRemoved
		case w == n:
			row.Kind = diffSame
		default:
			row.Kind = diffChanged
		}
		rows = append(rows, row)
	}
	return rows, more, nil
}

// topLevel splits a JSON object into its members, each value in canonical
// form; any other JSON value is one member under "".
func topLevel(b []byte) (map[string]string, error) {
	canon, err := audit.CanonicalJSON(b)
	if err != nil {
		return nil, errNotJSON
	}
	if len(canon) == 0 || canon[0] != '{' {
		return map[string]string{"": string(canon)}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(canon))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		return nil, errNotJSON
	}
	out := map[string]string{}
	for dec.More() {
		tk, err := dec.Token()
		if err != nil {
			return nil, errNotJSON
		}
		key, ok := tk.(string)
		if !ok {
			return nil, errNotJSON
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errNotJSON
		}
		out[key] = string(v)
	}
	return out, nil
}
