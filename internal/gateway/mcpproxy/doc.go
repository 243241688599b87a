// Package mcpproxy is mandate's MCP gateway: it stands between MCP clients
// (agents) and MCP servers (tools) and governs every call without breaking
// what the protocol does.
//
// Downstream it serves Streamable HTTP, MCP 2025-11-25 (sessions) and
// 2026-07-28 (sessionless requests; sessionless.go), authenticated by
// task tokens (Bearer or DPoP) with RFC 9728 protected resource metadata:
// one endpoint per upstream and an aggregated endpoint whose tools and
// prompts are namespaced "<upstream>__<name>". Upstream it speaks either
// revision to stdio servers it spawns (each downstream session, or task
// for sessionless clients, gets its own process, restarted with backoff
// when it crashes) and to Streamable HTTP servers.
//
// Each downstream session is an mcp.Server paired with one mcp.Client
// session per upstream, so server-to-client requests (sampling,
// elicitation, roots), notifications (progress, logging, list_changed,
// resource updates), cancellation and streaming have exactly one peer to
// be relayed to; sessionless clients share their task's session, each
// request on a server session of its own, and get an upstream's requests
// for input as input_required results. Governed calls to HTTP upstreams
// take the raw relay (relay.go, with the wire codec of internal/wire),
// the others the SDK's client. tools/list shows only tools the task may call;
// tools/call, resources/read and prompts/get are decided by a Decider
// (the access pipeline) with their arguments, recorded through an
// audit.Recorder before they proceed, and their outcomes recorded after.
// Tool definitions are pinned whole, as served, with internal/toolpin; a
// changed definition, or a new tool that looks like a renamed one, is
// quarantined until an admin approves it.
package mcpproxy
