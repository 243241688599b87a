package mcpproxy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
)

func TestFilePins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	p, err := mcpproxy.OpenFilePins(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := p.PutPin(ctx, &mcpproxy.Pin{Upstream: "b", Tool: "x", Digest: "sha256:1", Definition: []byte(`{"name":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := p.PutPin(ctx, &mcpproxy.Pin{Upstream: "a", Tool: "y", Digest: "sha256:2", Definition: []byte(`{"name":"y"}`)}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pins file: %v %v", fi, err)
	}
	q, err := mcpproxy.OpenFilePins(path)
	if err != nil {
		t.Fatal(err)
	}
	pins, _ := q.ListPins(ctx)
	if len(pins) != 2 || pins[0].Upstream != "a" || pins[1].Digest != "sha256:1" {
		t.Fatalf("reloaded pins = %+v", pins)
	}
	if _, err := q.GetPin(ctx, "a", "nope"); err != mcpproxy.ErrPinNotFound {
		t.Fatalf("GetPin(unknown) = %v", err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := mcpproxy.OpenFilePins(path); err == nil {
		t.Fatal("corrupt pins file accepted")
	}
}
