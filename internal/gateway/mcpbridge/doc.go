// Package mcpbridge is the agent side of mandate's MCP gateway: what
// `mandate mcp stdio` runs on the agent's machine so that an MCP client
// which can only spawn stdio servers (a desktop app, an IDE) is governed
// like any other client.
//
// Run speaks MCP on the client's stdin and stdout and relays every
// message, unchanged, to a gateway endpoint over Streamable HTTP, and the
// gateway's messages back. It neither decides nor filters: the gateway
// (internal/gateway/mcpproxy, on the server) does, and the two share no
// code, only the protocol.
//
// The credential is the task token the agent was issued for this work.
// Transport presents it on every HTTP request the bridge makes: as an
// "Authorization: Bearer" token, or, when the token is bound to a key
// (DPoP, RFC 9449, cnf.jkt), as "Authorization: DPoP" with a fresh proof
// by that key in the DPoP header, bound to the request's method and URL
// and to the token (the ath claim). A stolen DPoP-bound token is useless
// without the key, which never leaves the agent's machine.
package mcpbridge
