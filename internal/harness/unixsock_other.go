//go:build !windows

package harness

// noUnixSockets reports whether err says the OS has no AF_UNIX sockets:
// every Unix has them, so a failure to listen on one is a real error.
func noUnixSockets(error) bool { return false }
