package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// AdminClientAt is an HTTP client for the admin API served at addr (a
// server's AdminAddr: its admin socket, or the listener it was given).
func AdminClientAt(addr net.Addr) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, addr.Network(), addr.String())
		}}}
}

// AdminListener is what a test sets as the server's Config.AdminListener:
// nil where the OS has AF_UNIX sockets (the server then claims its admin
// socket, as in production), and a listener on a free loopback TCP port
// where it does not. Windows has had AF_UNIX sockets since Windows 10,
// but Wine, which runs the Windows tests in CI, has none. Whether it has
// them is probed by listening on a socket in dir (then removed); any other
// failure is returned.
func AdminListener(dir string) (net.Listener, error) {
	probe := filepath.Join(dir, "probe.sock")
	ln, err := net.Listen("unix", probe)
	if err == nil {
		ln.Close()
		os.Remove(probe)
		return nil, nil
	}
	if !noUnixSockets(err) {
		return nil, fmt.Errorf("probe AF_UNIX sockets: %w", err)
	}
	return net.Listen("tcp", "127.0.0.1:0")
}
