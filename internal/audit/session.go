package audit

// Event types of coding-agent sessions, recorded by the hooks (see
// docs/coding-agents.md).
const (
	// TypeAgentSessionStarted: a coding agent's session joined a task
	// (details: the agent's session ID, the hook's source and how the
	// session started).
	TypeAgentSessionStarted Type = "agent_session.started"
	// TypeAgentSessionEnded: a coding agent's session ended (details: why).
	TypeAgentSessionEnded Type = "agent_session.ended"
)
