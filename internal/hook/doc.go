// Package hook is mandate's enforcement point inside coding agents: the
// agent runs `mandate hook <agent>` before and after each tool use and at
// the start and end of a session, hands it one event on stdin, and obeys
// its answer.
//
// An Adapter is one agent's hook protocol: it parses the agent's event,
// maps a tool use to mandate actions — a shell command to the shell.exec
// of every program it starts (ReadShell, a real bash parser), a file tool
// to file.read or file.write of the real path (RealPath: absolute,
// cleaned, symbolic links resolved), a fetch to http.request of the
// canonical host, an MCP tool to tool.call, a sub-agent to task.delegate
// — and renders the answer in the agent's format. ClaudeCode and
// GeminiCLI are the adapters.
//
// The hook decides nothing itself. It runs in the agent's process tree,
// so it asks the server's AuthZEN API (POST /access/v1/evaluations,
// deny_on_first_deny) with the task's token (Bearer, or DPoP with a proof
// by the key it is bound to), and reports outcomes and session events to
// POST /access/v1/outcomes, which records them in the ledger. What it
// adds is only stricter: an action it cannot read safely is denied
// whatever the server says.
//
// Run fails closed: any error, garbage or oversized input, unknown event
// or tool, missing token, unreachable server, non-2xx or garbage answer,
// or its own deadline (shorter than the agent's hook timeout, which would
// let the call proceed) ends it with exit status 2 and the reason on
// stderr. See docs/coding-agents.md.
package hook
