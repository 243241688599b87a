//go:build windows

package audit

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// dialSyslog connects to the syslog server at raddr over udp or tcp.
// Windows has no local syslog daemon and log/syslog does not build there,
// so messages are formatted as log/syslog formats them for a remote
// server: "<PRI>TIMESTAMP HOSTNAME TAG[PID]: MSG".
func dialSyslog(network, raddr string) (syslogWriter, error) {
	if network != "udp" && network != "tcp" {
		return nil, errors.New("on Windows the syslog sink needs a remote server: udp://host:port or tcp://host:port")
	}
	c, err := net.DialTimeout(network, raddr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &netSyslog{c: c, stream: network == "tcp", host: host}, nil
}

// netSyslog is a syslog client over one network connection.
type netSyslog struct {
	mu     sync.Mutex
	c      net.Conn
	stream bool // tcp: messages end with a newline
	host   string
}

func (s *netSyslog) Info(msg string) error {
	const pri = syslogFacilityAuthpriv | syslogSeverityInfo
	nl := ""
	if s.stream && (msg == "" || msg[len(msg)-1] != '\n') {
		nl = "\n"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := fmt.Fprintf(s.c, "<%d>%s %s %s[%d]: %s%s", pri, time.Now().Format(time.RFC3339), s.host, syslogTag, os.Getpid(), msg, nl)
	return err
}

func (s *netSyslog) Close() error { return s.c.Close() }

// Syslog priority parts (RFC 5424 §6.2.1).
const (
	syslogFacilityAuthpriv = 10 << 3
	syslogSeverityInfo     = 6
)
