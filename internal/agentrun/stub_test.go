package agentrun

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// stubEgress is a loopback stand-in for the egress proxy: it takes
// Proxy-Authorization Basic with the task token as the password, as the
// real one does, and accepts it only when check(token) holds; it answers
// plain proxy requests itself ("via egress <url>"), and CONNECT to
// allowed:443 with a tunnel that answers "ping" with "pong"; CONNECT to
// anything else is refused with 403. It records every credential.
type stubEgress struct {
	ln    net.Listener
	check func(tok string) bool

	mu    sync.Mutex
	seen  []string // the tokens presented, in order
	other []string // Proxy-Authorization values that were not Basic
}

func newStubEgress(tb testing.TB, check func(string) bool) *stubEgress {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &stubEgress{ln: ln, check: check}
	srv := &http.Server{Handler: s}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { srv.Close() })
	return s
}

func (s *stubEgress) URL() string { return "http://" + s.ln.Addr().String() }

func (s *stubEgress) tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func (s *stubEgress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pa := r.Header.Get("Proxy-Authorization")
	raw, ok := strings.CutPrefix(pa, "Basic ")
	dec, err := base64.StdEncoding.DecodeString(raw)
	_, tok, found := strings.Cut(string(dec), ":")
	s.mu.Lock()
	if !ok || err != nil || !found {
		s.other = append(s.other, pa)
	} else {
		s.seen = append(s.seen, tok)
	}
	s.mu.Unlock()
	if !found || !s.check(tok) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="egress"`)
		http.Error(w, "task token refused", http.StatusProxyAuthRequired)
		return
	}
	if r.Method != http.MethodConnect {
		_, _ = w.Write([]byte("via egress " + r.URL.String()))
		return
	}
	if r.Host != "allowed:443" {
		http.Error(w, "egress: "+r.Host+" is denied", http.StatusForbidden)
		return
	}
	c, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	line, err := buf.ReadString('\n')
	if err == nil && line == "ping\n" {
		_, _ = c.Write([]byte("pong\n"))
	}
}

// connectThrough opens a CONNECT tunnel to target through the proxy at
// proxyAddr with the Proxy-Authorization value auth ("" for none), sends
// "ping" once it is open and returns the status line and the answer.
func connectThrough(proxyAddr, auth, target string) (status, answer string, err error) {
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		return "", "", err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status, "", nil
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return resp.Status, "", err
	}
	line, err := br.ReadString('\n')
	return resp.Status, strings.TrimSpace(line), err
}
