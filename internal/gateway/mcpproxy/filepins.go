package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// FilePins is a PinStore kept in one JSON file (written atomically, mode
// 0600), for the embedded single-node server. It is safe for concurrent
// use within one process.
//
// The server keeps pins in the store (table mcp_tool_pins); FilePins is
// for stores without that table.
type FilePins struct {
	path string
	mu   sync.Mutex
	mem  *MemoryPins
}

// OpenFilePins loads the pins in path (a missing file is empty).
func OpenFilePins(path string) (*FilePins, error) {
	p := &FilePins{path: path, mem: NewMemoryPins()}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mcpproxy: read pins: %w", err)
	}
	var pins []*Pin
	if err := json.Unmarshal(b, &pins); err != nil {
		return nil, fmt.Errorf("mcpproxy: read pins %s: %w", path, err)
	}
	for _, pin := range pins {
		p.mem.pins[pinKey{pin.Upstream, pin.Tool}] = *pin
	}
	return p, nil
}

// GetPin implements PinStore.
func (p *FilePins) GetPin(ctx context.Context, upstream, tool string) (*Pin, error) {
	return p.mem.GetPin(ctx, upstream, tool)
}

// ListPins implements PinStore.
func (p *FilePins) ListPins(ctx context.Context) ([]*Pin, error) { return p.mem.ListPins(ctx) }

// PutPin implements PinStore: the pin is on disk when it returns.
func (p *FilePins) PutPin(ctx context.Context, pin *Pin) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, oldErr := p.mem.GetPin(ctx, pin.Upstream, pin.Tool)
	_ = p.mem.PutPin(ctx, pin)
	all, _ := p.mem.ListPins(ctx)
	if err := p.write(all); err != nil {
		// Keep memory and disk in agreement.
		if oldErr == nil {
			_ = p.mem.PutPin(ctx, old)
		} else {
			p.mem.mu.Lock()
			delete(p.mem.pins, pinKey{pin.Upstream, pin.Tool})
			p.mem.mu.Unlock()
		}
		return err
	}
	return nil
}

func (p *FilePins) write(pins []*Pin) error {
	slices.SortFunc(pins, func(a, b *Pin) int { return strings.Compare(a.Upstream+"\x00"+a.Tool, b.Upstream+"\x00"+b.Tool) })
	b, err := json.MarshalIndent(pins, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".pins-*")
	if err != nil {
		return fmt.Errorf("mcpproxy: write pins: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p.path)
	}
	if err != nil {
		return fmt.Errorf("mcpproxy: write pins: %w", err)
	}
	return nil
}
