package dbconn_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

// sockState is what the kernel says of a socket's keepalives and user timeout.
type sockState struct {
	keepalive, idle, interval, count, userTimeout int
}

func getsockopts(t *testing.T, fd int) sockState {
	t.Helper()
	get := func(level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return sockState{
		keepalive:   get(unix.SOL_SOCKET, unix.SO_KEEPALIVE),
		idle:        get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
		interval:    get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL),
		count:       get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
		userTimeout: get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT),
	}
}

// socketState reads the options of a connection's TCP socket.
func socketState(t *testing.T, c *pgx.Conn) sockState {
	t.Helper()
	rc, err := netConn(t, c).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var s sockState
	if err := rc.Control(func(fd uintptr) { s = getsockopts(t, int(fd)) }); err != nil {
		t.Fatal(err)
	}
	return s
}

// systemSockState is a fresh TCP socket's options: the system's defaults.
func systemSockState(t *testing.T) sockState {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	return getsockopts(t, fd)
}
