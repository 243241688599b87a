package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/heapfloor"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/serveproc"
)

// upstreamEnv, set to "<kind> <protocol> <heap floor> [<target>]", makes
// mcpload run as the upstream process instead (see startUpstream), or as
// the pass-through proxy in front of the upstream at <target> (kind
// "proxy").
const upstreamEnv = "MCPLOAD_UPSTREAM"

// upstream is the MCP server the load calls, directly and through the
// gateway, speaking the revision measured. The lean one serves only the
// stateful revisions for 2025-11-25, and 2026-07-28 with them for
// 2026-07-28, as a current server would, so that the gateway's hop to it
// speaks the revision measured as well; the SDK's is stateful for
// 2025-11-25 and stateless for 2026-07-28.
func upstream(kind, protocol, target string) (http.Handler, error) {
	if kind == "proxy" {
		return passThrough(target)
	}
	if protocol != mcpproxytest.Version20251125 && protocol != mcpproxytest.Version20260728 {
		return nil, fmt.Errorf("unknown protocol revision %q", protocol)
	}
	modern := protocol == mcpproxytest.Version20260728
	switch kind {
	case "sdk":
		if modern {
			return mcpproxytest.SDKStatelessEchoServer(), nil
		}
		return mcpproxytest.SDKEchoServer(), nil
	case "lean":
		if modern {
			return &mcpproxytest.EchoServer{Versions: mcpproxytest.AllVersions}, nil
		}
		return &mcpproxytest.EchoServer{}, nil
	}
	return nil, fmt.Errorf("unknown upstream %q", kind)
}

// upstreamProc is the upstream running as a child process.
type upstreamProc struct {
	url   string
	cmd   *exec.Cmd
	stdin io.Closer // closing it ends the child
	done  chan error
}

// startUpstream runs the upstream in a process of its own, this program
// again with upstreamEnv set: then neither the clients nor the gateway
// share its heap, and a direct call crosses between processes as a call
// through the gateway does, so that the latency the gateway adds is its
// own and its extra hop's. The child serves until its stdin closes, so it
// cannot outlive mcpload.
func startUpstream(ctx context.Context, kind, protocol string, heapFloor int) (_ *upstreamProc, err error) {
	return startChild(ctx, fmt.Sprintf("%s %s %d", kind, protocol, heapFloor))
}

// startProxy runs the pass-through proxy (passThrough) in front of the
// upstream at target, in a process of its own as the upstream's.
func startProxy(ctx context.Context, target, protocol string, heapFloor int) (*upstreamProc, error) {
	return startChild(ctx, fmt.Sprintf("proxy %s %d %s", protocol, heapFloor, target))
}

// startChild runs this program again with upstreamEnv set to spec.
func startChild(ctx context.Context, spec string) (_ *upstreamProc, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), upstreamEnv+"="+spec)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	u := &upstreamProc{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
		io.Copy(io.Discard, stdout)
		u.done <- cmd.Wait()
	}()
	defer func() {
		if err != nil {
			u.close()
		}
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case u.url = <-lines:
		if !strings.HasPrefix(u.url, "http://") {
			return nil, fmt.Errorf("upstream process: said %q, want its URL", u.url)
		}
		return u, nil
	case <-t.C:
		return nil, errors.New("upstream process: no URL in 10s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cpu is the upstream process's CPU time so far.
func (u *upstreamProc) cpu() (time.Duration, error) { return serveproc.ProcessCPU(u.cmd.Process.Pid) }

// close ends the child: its stdin closes, then it is killed if it has not
// exited within 5s.
func (u *upstreamProc) close() {
	u.stdin.Close()
	select {
	case <-u.done:
	case <-time.After(5 * time.Second):
		u.cmd.Process.Kill()
		<-u.done
		fmt.Fprintln(os.Stderr, "mcpload: the upstream process did not stop (killed)")
	}
}

// asUpstream runs the upstream process and reports true if upstreamEnv
// asks for it (it exits on failure); else it returns false at once.
func asUpstream() bool {
	spec := os.Getenv(upstreamEnv)
	if spec == "" {
		return false
	}
	if err := upstreamMain(spec); err != nil {
		fmt.Fprintf(os.Stderr, "mcpload upstream: %v\n", err)
		os.Exit(1)
	}
	return true
}

// upstreamMain is the upstream process: it serves the upstream that spec
// (upstreamEnv's value) names on a loopback port, writes its URL to
// stdout, and exits when stdin closes.
func upstreamMain(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 3 && (len(f) != 4 || f[0] != "proxy") {
		return fmt.Errorf("%s=%q: want <kind> <protocol> <heap floor>, or proxy <protocol> <heap floor> <target>", upstreamEnv, spec)
	}
	f = append(f, "")
	floor, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return fmt.Errorf("%s=%q: heap floor: %v", upstreamEnv, spec, err)
	}
	h, err := upstream(f[0], f[1], f[3])
	if err != nil {
		return err
	}
	defer heapfloor.Start(floor).Stop()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	defer srv.Close()
	if _, err := fmt.Printf("http://%s\n", l.Addr()); err != nil {
		return err
	}
	io.Copy(io.Discard, os.Stdin)
	return nil
}
