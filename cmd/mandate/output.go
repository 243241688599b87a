package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
}

// row writes one row; tabs and newlines inside cells are flattened so that
// a value cannot break the layout.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c)
		if cells[i] == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// list writes a label with one value per line ("-" for none).
func (t *table) list(label string, values []string) {
	if len(values) == 0 {
		t.row(label, "-")
		return
	}
	for i, v := range values {
		if i > 0 {
			label = ""
		}
		if label == "" {
			fmt.Fprintln(t.tw, "\t"+strings.NewReplacer("\t", " ", "\n", " ").Replace(v))
			continue
		}
		t.row(label, v)
	}
}

func (t *table) flush() error { return t.tw.Flush() }

// fmtTime formats an API time for people: UTC, to the second.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// fmtExpiry is fmtTime plus how far away the time is.
func fmtExpiry(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d >= 0 {
		return fmt.Sprintf("%s (in %s)", fmtTime(t), d)
	}
	return fmt.Sprintf("%s (%s ago)", fmtTime(t), -d)
}

// truncate shortens s to n runes for table cells.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
