package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/server"
)

// maxResponseSize bounds what the CLI reads from the admin API.
const maxResponseSize = 32 << 20

// clientFlags are the connection and output flags of every command that
// talks to the admin API.
type clientFlags struct {
	dataDir string
	server  string
	token   string
	output  string
}

func (a *app) addClientFlags(cmd *cobra.Command, f *clientFlags) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.dataDir, "data-dir", "", "data directory of the local server, whose admin socket is used (default $MANDATE_DATA_DIR, else $XDG_DATA_HOME/mandate or ~/.local/share/mandate)")
	pf.StringVar(&f.server, "server", "", "URL of a remote mandate server, instead of the local socket (default $MANDATE_SERVER)")
	pf.StringVar(&f.token, "token", "", "admin token for --server (default $MANDATE_ADMIN_TOKEN)")
	pf.StringVarP(&f.output, "output", "o", "table", "output format: table (for people) or json (the API's JSON, for scripts)")
}

// client talks to the admin API over the local socket or HTTP(S).
type client struct {
	http   *http.Client
	base   string // URL prefix of every request
	token  string
	socket string // the socket path, when using it
	output string
	stdout io.Writer // where -o json prints
}

func (a *app) newClient(f *clientFlags) (*client, error) {
	switch f.output {
	case "table", "json":
	default:
		return nil, usageError{fmt.Errorf("--output %q: want table or json", f.output)}
	}
	srv := firstNonEmpty(f.server, a.getenv("MANDATE_SERVER"))
	token := firstNonEmpty(f.token, a.getenv("MANDATE_ADMIN_TOKEN"))
	if srv != "" {
		u, err := url.Parse(srv)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageError{fmt.Errorf("--server %q: want an http(s) URL such as https://mandate.example.com:8443", srv)}
		}
		return &client{
			http:   &http.Client{Timeout: time.Minute},
			base:   strings.TrimSuffix(u.String(), "/"),
			token:  token,
			output: f.output,
			stdout: a.stdout,
		}, nil
	}
	dataDir := firstNonEmpty(f.dataDir, a.getenv("MANDATE_DATA_DIR"), server.DefaultDataDir(a.getenv))
	sock := server.SocketPath(dataDir)
	return &client{
		http: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}},
		base:   "http://mandate", // the host is ignored: every connection goes to the socket
		socket: sock,
		output: f.output,
		stdout: a.stdout,
	}, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// fetch sends a request to the admin API (see do) and decodes the answer
// into out, for the caller to render as a table; with -o json it prints
// the answer as the API gave it instead, and reports printed.
func (c *client) fetch(ctx context.Context, method, path string, query url.Values, body, out any) (printed bool, err error) {
	data, err := c.do(ctx, method, path, query, body)
	if err != nil {
		return false, err
	}
	if c.output == "json" {
		return true, printJSON(c.stdout, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("decoding the server's response: %w", err)
	}
	return false, nil
}

// do sends a request to the admin API and returns the response body of a
// successful request. A problem+json error becomes an *apiError with its
// detail; a connection failure explains how to reach a server.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	data, _, err := c.doWithHeaders(ctx, method, path, query, nil, body)
	return data, err
}

// doWithHeaders is do with extra request headers (preconditions such as
// If-Match) that also returns the response's headers (its ETag).
func (c *client) doWithHeaders(ctx context.Context, method, path string, query url.Values, header http.Header, body any) ([]byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" && c.socket == "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, c.connError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the server's response: %w", err)
	}
	if resp.StatusCode >= 300 {
		return nil, nil, c.statusError(resp, data)
	}
	return data, resp.Header, nil
}

func (c *client) connError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if c.socket != "" {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("no mandate server is listening on %s.\n"+
				"Start one with 'mandate serve' (same --data-dir), or reach a remote one with --server URL --token TOKEN", c.socket)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Errorf("permission denied on the admin socket %s: it is private (mode 0600) to the user running 'mandate serve'; run this command as that user", c.socket)
		}
		return fmt.Errorf("cannot reach the mandate server on %s: %v", c.socket, err)
	}
	return fmt.Errorf("cannot reach the mandate server at %s: %v", c.base, err)
}

func (c *client) statusError(resp *http.Response, data []byte) error {
	var p struct {
		Detail string `json:"detail"`
		Title  string `json:"title"`
	}
	msg := ""
	if json.Unmarshal(data, &p) == nil {
		msg = firstNonEmpty(p.Detail, p.Title)
	}
	if msg == "" {
		snippet := strings.TrimSpace(string(data))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "…"
		}
		msg = fmt.Sprintf("server answered %s: %s", resp.Status, snippet)
	}
	if resp.StatusCode == http.StatusUnauthorized && c.socket == "" && c.token == "" {
		msg += " (pass --token or set MANDATE_ADMIN_TOKEN)"
	}
	return &apiError{status: resp.StatusCode, msg: msg}
}

// apiError is an error answer of the admin API: the message shown to the
// user, and the status for commands that explain some answers better
// (a failed precondition, a conflict).
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// apiStatus is err's HTTP status if it is an answer of the admin API, else 0.
func apiStatus(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return 0
}

// printJSON writes an API response as-is, newline-terminated.
func printJSON(w io.Writer, data []byte) error {
	data = bytes.TrimRight(data, "\n")
	_, err := fmt.Fprintf(w, "%s\n", data)
	return err
}
