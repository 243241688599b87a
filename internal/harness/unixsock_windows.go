package harness

import (
	"errors"
	"syscall"
)

// wsaeafnosupport is WSAEAFNOSUPPORT, what creating an AF_UNIX socket
// fails with where the Winsock provider has none (Wine, Windows before 10).
const wsaeafnosupport = syscall.Errno(10047)

// noUnixSockets reports whether err says the OS has no AF_UNIX sockets.
func noUnixSockets(err error) bool { return errors.Is(err, wsaeafnosupport) }
