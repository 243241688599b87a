//go:build !windows && !plan9

package audit

import "log/syslog"

// dialSyslog connects to the syslog server at raddr over network, or to
// the local daemon when network is "".
func dialSyslog(network, raddr string) (syslogWriter, error) {
	return syslog.Dial(network, raddr, syslog.LOG_AUTHPRIV|syslog.LOG_INFO, syslogTag)
}
