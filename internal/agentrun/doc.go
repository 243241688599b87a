// Package agentrun is `mandate run`: it runs a command as an agent's task.
//
// Run starts a task the way the agent itself does — a client_credentials
// grant authenticated with the agent's private key (private_key_jwt, RFC
// 7523), then an RFC 8693 token exchange with the purpose and scope, or,
// when a person's token proves who asked, with that person's token as the
// subject and the agent's as the actor — so the task fits the agent's
// entitlement and runs on behalf of whom the server can prove, never of
// whom the command line says.
//
// The command gets the task's credential as a short-lived token file
// (mode 0600, in a private 0700 directory, replaced atomically when the
// token is renewed, removed at exit) named by MANDATE_TASK_TOKEN_FILE —
// never the token itself, nor the agent's key, in its environment. When
// an egress proxy is configured, a local forwarder on 127.0.0.1 stands
// in for it: HTTP_PROXY and HTTPS_PROXY name the forwarder with a
// per-run secret, and the forwarder adds the current task token as the
// egress proxy's Proxy-Authorization.
//
// When the command exits, is killed, or mandate run is signalled (the
// signal is forwarded to the command first), the task ends — every token
// of it is refused at once — and Run returns the command's exit status,
// 128+n for a command killed by signal n, as shells report it. A task
// that cannot be ended is reported, loudly, as an error.
package agentrun
