package agentrun

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/hook"
)

// TestMain runs this test binary as the command under mandate run when
// its arguments say so (helperCommand): a Go program, so the same
// script runs on every platform; or as the stdio MCP server of the
// end-to-end test's gateway (stdioUpstream).
func TestMain(m *testing.M) {
	if os.Getenv(stdioUpstreamEnv) != "" {
		stdioUpstream()
		return
	}
	if i := indexOf(os.Args, "helper"); i > 0 && os.Args[i-1] == "--" && len(os.Args) == i+3 {
		os.Exit(helper(os.Args[i+1], os.Args[i+2]))
	}
	os.Exit(m.Run())
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// helper is the command mandate run runs in the tests. Every mode writes
// a JSON report to out; "script" exits 3.
//
//	script:   reads the token file, feeds AGENTRUN_PAYLOAD to
//	          `$AGENTRUN_MANDATE hook claude-code`, fetches AGENTRUN_TARGET
//	          through $HTTP_PROXY and pings allowed:443 through a CONNECT
//	          tunnel of $HTTPS_PROXY
//	sleep:    reports, then sleeps until killed (at most a minute)
//	watch:    reads the token file every 50ms for AGENTRUN_WATCH, reports
//	          the distinct tokens seen, then runs the hook once
//	wait:     reports, then waits for the file AGENTRUN_GO and exits 0
//	e2e:      a governed agent's steps (e2eScript), exits 0
func helper(mode, out string) int {
	rep := map[string]string{}
	write := func() {
		b, _ := json.Marshal(rep)
		_ = os.WriteFile(out+".tmp", b, 0o600)
		_ = os.Rename(out+".tmp", out)
	}
	path := os.Getenv("MANDATE_TASK_TOKEN_FILE")
	b, err := os.ReadFile(path)
	if err != nil {
		rep["error"] = err.Error()
		write()
		return 99
	}
	tok := strings.TrimSpace(string(b))
	rep["token"], rep["token_file"], rep["task_id"] = tok, path, os.Getenv("MANDATE_TASK_ID")
	if fi, err := os.Stat(path); err == nil {
		rep["file_mode"] = fmt.Sprintf("%o", fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Dir(path)); err == nil {
		rep["dir_mode"] = fmt.Sprintf("%o", fi.Mode().Perm())
	}
	for _, kv := range os.Environ() {
		if strings.Contains(kv, tok) {
			rep["token_in_env"] = strings.SplitN(kv, "=", 2)[0]
		}
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MANDATE_") || strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			rep["env_"+k] = strings.SplitN(kv, "=", 2)[1]
		}
	}
	if cfg := os.Getenv("MANDATE_MCP_CONFIG"); cfg != "" {
		b, _ := os.ReadFile(cfg)
		rep["mcp_config"] = string(b)
	}
	switch mode {
	case "script":
		rep["hook_exit"], rep["hook_out"] = runHook(os.Getenv("AGENTRUN_PAYLOAD"))
		rep["get"] = proxyGet(os.Getenv("AGENTRUN_TARGET"))
		rep["connect"] = proxyConnect()
		write()
		return 3
	case "sleep":
		write()
		time.Sleep(time.Minute)
		return 0
	case "watch":
		d, _ := time.ParseDuration(os.Getenv("AGENTRUN_WATCH"))
		seen := []string{tok}
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			// Read as mandate's own readers do (hook.LoadToken), which on
			// Windows wait out a rename replacing the file.
			t, err := hook.LoadToken(func(k string) string {
				if k == "MANDATE_TASK_TOKEN_FILE" {
					return path
				}
				return ""
			})
			if err != nil || strings.Count(t, ".") != 2 {
				rep["torn"] = fmt.Sprintf("%q %v", t, err)
				break
			}
			if t != seen[len(seen)-1] {
				seen = append(seen, t)
			}
		}
		rep["seen"] = strings.Join(seen, " ")
		rep["hook_exit"], rep["hook_out"] = runHook(os.Getenv("AGENTRUN_PAYLOAD"))
		write()
		return 0
	case "wait":
		write()
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(os.Getenv("AGENTRUN_GO")); err == nil {
				return 0
			}
		}
		return 98
	case "e2e":
		e2eScript(rep)
		write()
		return 0
	}
	return 97
}

// runHook feeds payload to `$AGENTRUN_MANDATE hook claude-code`.
func runHook(payload string) (string, string) {
	bin := os.Getenv("AGENTRUN_MANDATE")
	if bin == "" {
		return "", ""
	}
	cmd := exec.Command(bin, "hook", "claude-code")
	cmd.Stdin = strings.NewReader(payload)
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	err := cmd.Run()
	code := "0"
	if ee, ok := err.(*exec.ExitError); ok {
		code = fmt.Sprint(ee.ExitCode())
	} else if err != nil {
		code = err.Error()
	}
	return code, outb.String() + errb.String()
}

// proxyGet fetches target through the environment's proxy.
func proxyGet(target string) string {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	resp, err := hc.Get(target)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// proxyConnect opens a tunnel to allowed:443 through $HTTPS_PROXY, with
// the credentials its URL carries, and pings through it.
func proxyConnect() string {
	p, err := url.Parse(os.Getenv("HTTPS_PROXY"))
	if err != nil || p.User == nil {
		return "error: no HTTPS_PROXY with credentials"
	}
	pass, _ := p.User.Password()
	c, err := net.DialTimeout("tcp", p.Host, 10*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte(p.User.Username() + ":" + pass))
	fmt.Fprintf(c, "CONNECT allowed:443 HTTP/1.1\r\nHost: allowed:443\r\nProxy-Authorization: Basic %s\r\n\r\n", auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "error: " + err.Error()
	}
	if resp.StatusCode != 200 {
		return resp.Status
	}
	fmt.Fprint(c, "ping\n")
	line, _ := br.ReadString('\n')
	return resp.Status + " " + strings.TrimSpace(line)
}
