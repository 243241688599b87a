// Package egress is mandate's HTTP egress proxy: a forward proxy (plain
// HTTP in absolute form, and CONNECT tunnels) between an agent's process
// and the network, on a listener of its own.
//
// Every request and every tunnel is an http.request decided by the access
// pipeline (point "egress"); the proxy decides nothing itself but the
// limits of its own protocol:
//
//  1. authenticate — the task token from Proxy-Authorization (Basic, the
//     token as the password and any user name, as curl, git, npm, pip and
//     Go's client send it from HTTP_PROXY=http://x:TOKEN@host:port; or
//     Bearer); a missing or refused credential is a recorded 407
//  2. destination  — the request target parsed strictly; the host
//     canonicalised (lower case, IDNA A-labels, no trailing dot) and then
//     held to resource.CheckHost, so that an IP address in any spelling
//     but its one canonical form ("2130706433", "0177.0.0.1", "127.1",
//     "[::ffff:127.0.0.1]") is refused, never cleaned
//  3. decide       — access.Pipeline.DecideAs with the host (and a port
//     other than the scheme's) as the resource and the method and path as
//     the destination; the decision is in the ledger before anything is
//     sent
//  4. connect      — the name is resolved once; every address is checked
//     (private, loopback, link-local, cloud metadata, multicast and the
//     other special-purpose ranges are refused unless configured), and
//     the connection goes to an address that was checked, never to a
//     second resolution (no DNS rebinding)
//  5. outcome      — status, bytes and duration are recorded as an
//     action.completed event
//
// What the proxy sees of HTTPS is the CONNECT: host, port and method —
// unless the host is intercepted (Config.Intercept): the tunnel's TLS is
// then terminated with a leaf of mandate's own CA (CA, LoadCA: ECDSA
// P-256, name-constrained to the intercepted hosts, its key sealed at
// rest) and each request inside is decided by method and path like a
// plain HTTP one, then sent over verified TLS to an address checked when
// the CONNECT was allowed.
//
// A request header may carry a secret's placeholder "[secret:NAME]": if
// the secret is delivered to the request's host, it is leased to the
// task (Secrets, the broker's secret.use decision), the injection
// recorded with the value's HMAC, and the placeholder replaced; a
// placeholder for any other host is refused and recorded. Every response
// to a task with injected values is scrubbed of them (headers, trailers,
// the streamed body). See docs/egress.md.
package egress
