// Package wire is the MCP gateway's codec for what its raw relay reads
// and writes: JSON-RPC 2.0 messages (the envelope decoded, the payload
// kept as it came) and the Streamable HTTP event stream (server-sent
// events) that carries them.
//
// It decodes exactly as encoding/json does, errors included, and is
// fuzzed against it; but without reflection on the common path (members
// named as senders name them, strings that need no unescaping). The relay
// passes on results and notifications it does not need to read, often
// large; decoding them into Go values, or re-encoding them, would cost
// more than the call's decision.
//
// It imports nothing of mandate's: it is a codec, not a policy.
package wire
