package egress_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/token"
)

// Every request on a kept-alive connection is authenticated by what it
// carries: another header is read anew, and a token revoked between two
// requests is refused on the next one.
func TestEveryRequestOnAConnectionAuthenticated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{allowPrivate: loopback})
	up := newUpstream(t, false)
	scope := "http.request:" + up.addr()
	good := e.taskToken(t, "agent", identity.TierAutonomous, scope)
	other := e.taskToken(t, "other", identity.TierAutonomous, "http.request:example.com")
	c, err := net.DialTimeout("tcp", e.proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i, step := range []struct {
		name, auth string
		before     func()
		want       int
	}{
		{"good", basic(good), nil, 200},
		{"same again", basic(good), nil, 200},
		{"garbage", basic("not-a-token"), nil, 407},
		{"good after garbage", basic(good), nil, 200},
		{"another task's token", basic(other), nil, 403},
		{"no credential", "X-None: 1", nil, 407},
		{"good as Bearer", "Proxy-Authorization: Bearer " + good, nil, 200},
		{"revoked", basic(good), func() {
			if err := e.auth.Tokens.Revoke(context.Background(), token.Caller{Admin: true}, good); err != nil {
				t.Fatal(err)
			}
		}, 407},
	} {
		if step.before != nil {
			step.before()
		}
		before := e.rec.len()
		fmt.Fprintf(c, "GET http://%s/%d HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", up.addr(), i, up.addr(), step.auth)
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != step.want {
			t.Fatalf("%s: status %d, want %d", step.name, resp.StatusCode, step.want)
		}
		want := "allow"
		if step.want != 200 {
			want = "deny"
		}
		oneDecision(t, e.rec.since(before), want)
		if resp.Close {
			t.Fatalf("%s: the proxy closed the connection", step.name)
		}
	}
}
