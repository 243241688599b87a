package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// passThrough is the baseline the gateway is measured against besides
// the direct path: net/http's reverse proxy in front of the upstream at
// target, relaying every request and response unchanged (a keep-alive
// connection per client, responses flushed as they arrive, so that SSE
// streams pass too) and doing nothing else. What it adds over the direct
// path is what one more Go HTTP hop costs on this machine, in latency and
// in CPU: the part of the gateway's figures that no work of the gateway's
// own could remove.
func passThrough(target string) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("proxy target %q: want an http:// URL", target)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.FlushInterval = -1
	p.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	return p, nil
}
