package agentrun

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
)

// TestForwarder: the local forwarder lets through only who holds the
// run's secret, never passes the secret on, presents the current task
// token to the egress proxy for plain requests and CONNECT tunnels alike
// (a renewed one from the next request on), and relays the proxy's
// refusals without inviting a retry with other credentials.
func TestForwarder(t *testing.T) {
	t.Parallel()
	var cur atomic.Value
	cur.Store("tok-1")
	stub := newStubEgress(t, func(tok string) bool { return tok == cur.Load().(string) })
	fwd, err := newForwarder(stub.URL(), func() string { return cur.Load().(string) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	pu, _ := url.Parse(fwd.URL())
	if pu.Hostname() != "127.0.0.1" {
		t.Fatalf("forwarder listens on %s, want 127.0.0.1", pu.Host)
	}
	secret, _ := pu.User.Password()
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}

	get := func(proxy *url.URL) (int, string) {
		t.Helper()
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
		resp, err := hc.Get("http://allowed.example/path?q=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	noAuth := &url.URL{Scheme: "http", Host: pu.Host}
	wrong := &url.URL{Scheme: "http", Host: pu.Host, User: url.UserPassword(ProxyUser, secret+"x")}
	for name, p := range map[string]*url.URL{"no credentials": noAuth, "a wrong secret": wrong} {
		if code, _ := get(p); code != http.StatusProxyAuthRequired {
			t.Errorf("plain request with %s = %d, want 407", name, code)
		}
	}
	for name, auth := range map[string]string{
		"none": "", "a wrong secret": basic(ProxyUser, "nope"), "the secret as the user name": basic(secret, ""),
		"Bearer": "Bearer " + secret, "the token itself": basic(ProxyUser, "tok-1"),
	} {
		if st, _, err := connectThrough(pu.Host, auth, "allowed:443"); err != nil || st != "407 Proxy Authentication Required" {
			t.Errorf("CONNECT with %s = %q %v, want 407", name, st, err)
		}
	}
	if n := len(stub.tokens()) + len(stub.other); n != 0 {
		t.Fatalf("the egress proxy saw %d requests from unauthenticated clients", n)
	}

	if code, body := get(pu); code != 200 || body != "via egress http://allowed.example/path?q=1" {
		t.Errorf("plain request = %d %q", code, body)
	}
	if st, ans, err := connectThrough(pu.Host, basic("anyone", secret), "allowed:443"); err != nil || st != "200 Connection established" || ans != "pong" {
		t.Errorf("CONNECT tunnel = %q %q %v, want 200 and pong", st, ans, err)
	}
	if st, _, err := connectThrough(pu.Host, basic(ProxyUser, secret), "denied:443"); err != nil || st != "403 Forbidden" {
		t.Errorf("CONNECT to a denied host = %q %v, want the egress proxy's 403", st, err)
	}
	cur.Store("tok-2") // renewed
	if code, _ := get(pu); code != 200 {
		t.Errorf("plain request after renewal = %d", code)
	}
	if st, ans, _ := connectThrough(pu.Host, basic(ProxyUser, secret), "allowed:443"); ans != "pong" {
		t.Errorf("CONNECT after renewal = %q %q", st, ans)
	}
	want := []string{"tok-1", "tok-1", "tok-1", "tok-2", "tok-2"}
	if got := stub.tokens(); !slices.Equal(got, want) {
		t.Errorf("tokens presented to the egress proxy = %v, want %v (never the secret)", got, want)
	}

	// The egress proxy refuses the token (the task ended): 502, no
	// invitation to retry with credentials.
	stub.check = func(string) bool { return false }
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	resp, err := hc.Get("http://allowed.example/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Proxy-Authenticate") != "" {
		t.Errorf("refused token: plain request = %d (Proxy-Authenticate %q), want 502 without a challenge", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	if st, _, _ := connectThrough(pu.Host, basic(ProxyUser, secret), "allowed:443"); st != "502 Bad Gateway" {
		t.Errorf("refused token: CONNECT = %q, want 502", st)
	}
	if st, _, _ := connectThrough(pu.Host, basic(ProxyUser, secret), "no-port"); st != "400 Bad Request" {
		t.Errorf("CONNECT without a port = %q, want 400", st)
	}
}

// TestForwarderURL: only an http(s) proxy URL without credentials or a
// path is taken.
func TestForwarderURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:3128", "socks5://127.0.0.1:1080", "http://u:p@127.0.0.1:3128", "http://127.0.0.1:3128/x", "http://127.0.0.1:3128?x=1", "http://"} {
		if f, err := newForwarder(u, func() string { return "" }, slog.New(slog.DiscardHandler)); err == nil {
			f.Close()
			t.Errorf("newForwarder(%q) accepted", u)
		}
	}
}
