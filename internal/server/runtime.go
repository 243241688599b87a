package server

import "runtime/debug"

// GCPercent is the garbage collector's target (GOGC) the server runs with
// unless the GOGC environment variable says otherwise. Go's default, 100,
// collects whenever the heap doubles; a request-heavy server with a small
// live heap then spends much of its CPU collecting. At 400 the MCP
// gateway's CPU per proxied call drops by about a third (cmd/mcpload) for
// a heap that can grow to five times the live data — tens of megabytes
// here. GOMEMLIMIT bounds it where memory is tight.
const GCPercent = 400

// TuneGC applies GCPercent when getenv("GOGC") is empty, and reports
// whether it did.
func TuneGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(GCPercent)
	return true
}
