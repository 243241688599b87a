// Package token is mandate's OAuth 2.0 authorization server for agents.
//
// It issues two kinds of RFC 9068 JWT access tokens (typ "at+jwt"), signed
// with the server's own Ed25519 keys (see Keyring):
//
//   - agent tokens (token_use "agent"): identity only, minutes long, with
//     the issuer itself as audience. An agent gets one with the
//     client_credentials grant and private_key_jwt client authentication
//     (RFC 7523 §2.2), or, for a federated agent, with the jwt-bearer grant
//     (RFC 7523 §2.1) and a JWT from a trusted external OIDC issuer. Agent
//     tokens are good for one thing: token exchange.
//   - task tokens (token_use "task"): bound to one task mandate, obtained by
//     token exchange (RFC 8693). An agent starts a task (or joins one an
//     admin started) by exchanging its agent token; it delegates to another
//     agent by exchanging a task token (subject_token) together with the
//     sub-agent's agent token (actor_token); it renews by exchanging a task
//     token on its own. The sub claim is the task's principal (the human on
//     whose behalf the work is done), and the act claim is the chain of
//     agents, the current one outermost.
//
// Tokens may be sender-constrained with DPoP (RFC 9449): when a proof is
// presented at the token endpoint the token carries cnf.jkt, and Verifier
// then demands a proof signed by that key on every use. A DPoP-bound token
// can only be exchanged with a proof for its key and is never exchanged
// into an unbound one. In a delegation the child token is bound to the
// actor token's key when the actor token is bound (so only the sub-agent
// can use it), otherwise to the presented proof's key.
//
// Verifier.Verify is the one verification function used everywhere in
// mandate: algorithm allow-list, typ, key ID, signature, issuer, audience,
// time claims with a small skew, then revocation state (Revocations) and
// DPoP. Verified tokens are cached, so the hot path is a map lookup plus a
// revocation check; revocations take effect at once even for cached tokens.
//
// Server implements the grants, introspection (RFC 7662) and revocation
// (RFC 7009) over the domain stores; package httpapi serves it over HTTP.
// Every token issued or refused is recorded through audit.Recorder, and a
// token is never issued if its event cannot be recorded.
package token
