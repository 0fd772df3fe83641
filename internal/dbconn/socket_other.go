//go:build !linux

package dbconn

import (
	"syscall"
	"time"
)

// tcpUserTimeoutControl does nothing: as with libpq, tcp_user_timeout has no effect where
// the system has no TCP_USER_TIMEOUT.
func tcpUserTimeoutControl(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
