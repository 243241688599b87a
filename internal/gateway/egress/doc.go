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
// What the proxy sees of HTTPS is the CONNECT: host, port and method. TLS
// interception (paths and headers of HTTPS requests) is not part of this
// package yet. See docs/egress.md.
package egress
