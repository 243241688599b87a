package storetest

import (
	"errors"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
)

func testReplaceLedgerKey(t *testing.T, open OpenFunc) {
	s := open(t)
	k, err := s.LedgerKey(t.Context(), "k", func() ([]byte, error) { return []byte("clear"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LedgerKey(t.Context(), "other", func() ([]byte, error) { return []byte("o"), nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		key     string
		old     []byte
		wantErr error
	}{
		{"stale old value", "k", []byte("not it"), audit.ErrLedgerKeyChanged},
		{"unknown name", "nope", k, audit.ErrLedgerKeyChanged},
		{"another key's value", "k", []byte("o"), audit.ErrLedgerKeyChanged},
		{"current value", "k", k, nil},
		{"again with the replaced value", "k", k, audit.ErrLedgerKeyChanged},
	} {
		err := s.ReplaceLedgerKey(t.Context(), tc.key, tc.old, []byte("sealed"))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%s: ReplaceLedgerKey(%s) = %v, want %v", tc.name, tc.key, err, tc.wantErr)
		}
	}
	for name, want := range map[string]string{"k": "sealed", "other": "o"} {
		got, err := s.LedgerKey(t.Context(), name, func() ([]byte, error) { return nil, errors.New("must not generate") })
		if err != nil || string(got) != want {
			t.Errorf("LedgerKey(%s) after ReplaceLedgerKey = %q, %v, want %q", name, got, err, want)
		}
	}
}
