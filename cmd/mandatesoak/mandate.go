package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/mandatehq/mandate/internal/harness"
)

// What every task is for; the harness's decisions stay inside taskScope.
const (
	taskScope   = "tool.call:echo/* file.read:/data/**"
	taskPurpose = "memory soak"
	onBehalfOf  = "alice@example.com"
	trustDomain = "example.org"
	// taskBudget is large enough never to be spent, so that every task
	// keeps counting usage.
	taskBudget = 1_000_000_000
)

// metrics reads the named gauges and counters (without labels) from the
// server's Prometheus endpoint.
func metrics(ctx context.Context, hc *http.Client, base string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body, names...)
}

// parseMetrics picks the named unlabelled samples out of Prometheus text.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, n := range names {
			if name == n {
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil {
					return nil, fmt.Errorf("metric %s: %v", n, err)
				}
				out[n] = f
			}
		}
	}
	return out, sc.Err()
}

// soakTask is what every task is for; the harness's decisions stay inside
// its scope.
var soakTask = harness.Task{Scope: taskScope, Purpose: taskPurpose, OnBehalfOf: onBehalfOf, MaxActions: taskBudget}

// registerAgent registers the autonomous agent the tasks run as, over the
// admin socket.
func registerAgent(ctx context.Context, socket string) (*harness.Agent, error) {
	return harness.RegisterAgent(ctx, harness.AdminClient(socket), harness.Registration{
		Name: "soak", Owner: onBehalfOf, Escalation: "oncall@example.com", Tier: "autonomous",
		Entitle: strings.Fields(taskScope),
	})
}
