package dbconn

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// sockOpts are the settings ibex applies to a db's socket itself.
type sockOpts struct {
	keepalives     bool
	keepalive      net.KeepAliveConfig // negative fields: the system's default
	tcpUserTimeout time.Duration       // 0: the system's default
	replyTimeout   time.Duration       // 0: none
}

// parseSockOpts reads keepalives, keepalives_idle, keepalives_interval, keepalives_count,
// tcp_user_timeout (as libpq: seconds, and milliseconds for tcp_user_timeout; 0 means the
// system's default) and reply_timeout (seconds; 0 means none). Unset ones take ibex's
// defaults.
func parseSockOpts(settings map[string]string) (sockOpts, error) {
	so := sockOpts{
		keepalives: true,
		keepalive: net.KeepAliveConfig{
			Enable:   true,
			Idle:     DefaultKeepalivesIdle,
			Interval: DefaultKeepalivesInterval,
			Count:    DefaultKeepalivesCount,
		},
		tcpUserTimeout: DefaultTCPUserTimeout,
		replyTimeout:   DefaultReplyTimeout,
	}
	for k, v := range settings {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return so, fmt.Errorf("%s must be %s, not %q", k, socketKeyUnits[k], v)
		}
		switch k {
		case "keepalives":
			if n > 1 {
				return so, fmt.Errorf("%s must be %s, not %q", k, socketKeyUnits[k], v)
			}
			so.keepalives = n == 1
		case "keepalives_idle":
			so.keepalive.Idle = seconds(n)
		case "keepalives_interval":
			so.keepalive.Interval = seconds(n)
		case "keepalives_count":
			so.keepalive.Count = int(n)
			if n == 0 {
				so.keepalive.Count = -1
			}
		case "tcp_user_timeout":
			so.tcpUserTimeout = time.Duration(n) * time.Millisecond
		case "reply_timeout":
			so.replyTimeout = time.Duration(n) * time.Second
		}
	}
	if !so.keepalives {
		so.keepalive = net.KeepAliveConfig{Enable: false}
	}
	return so, nil
}

var socketKeyUnits = map[string]string{
	"keepalives":          "1 (on) or 0 (off)",
	"keepalives_idle":     "a whole number of seconds (0: the system's default)",
	"keepalives_interval": "a whole number of seconds (0: the system's default)",
	"keepalives_count":    "a whole number (0: the system's default)",
	"tcp_user_timeout":    "a whole number of milliseconds (0: the system's default)",
	"reply_timeout":       "a whole number of seconds (0: no limit)",
}

// seconds converts a libpq keepalive setting; 0, the system's default, is negative for
// net.KeepAliveConfig.
func seconds(n int64) time.Duration {
	if n == 0 {
		return -1
	}
	return time.Duration(n) * time.Second
}

// dialer returns the dialer of a db's connections.
func (so sockOpts) dialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAliveConfig: so.keepalive}
	if !so.keepalives {
		d.KeepAlive = -1
	}
	if so.tcpUserTimeout > 0 {
		d.Control = tcpUserTimeoutControl(so.tcpUserTimeout)
	}
	return d
}

// replyGuard fails a Read that gets nothing for timeout. pgx reads only while it waits
// for a reply, so this bounds how long a server may stay silent while a reply is due,
// which keepalives cannot (a stalled server's kernel, or a proxy in front of it, still
// answers them). pgx also reads while it streams COPY FROM STDIN (to catch an early
// error), when the server owes nothing yet: every write therefore moves the limit on, so
// it counts from the last byte sent. Deadlines pgx sets (to interrupt a read when a
// context ends) are kept: the earlier one applies.
type replyGuard struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	deadline time.Time // the read deadline the caller set
	reading  bool
	due      time.Time // while reading: when the guard gives up
}

// ReplyTimeoutError is the error of a read that got nothing within reply_timeout.
type ReplyTimeoutError struct{ After time.Duration }

func (e *ReplyTimeoutError) Error() string {
	return fmt.Sprintf("the server sent nothing for %s while a reply was due (reply_timeout=%d)", e.After, int64(e.After/time.Second))
}

// Timeout is true: ReplyTimeoutError is a net.Error that timed out.
func (e *ReplyTimeoutError) Timeout() bool { return true }

// Unwrap makes errors.Is(err, os.ErrDeadlineExceeded) hold, as for any read deadline.
func (e *ReplyTimeoutError) Unwrap() error { return os.ErrDeadlineExceeded }

// Temporary is false: the connection is not usable any more.
func (e *ReplyTimeoutError) Temporary() bool { return false }

// readDeadline is the deadline of the socket: the caller's, or the guard's while reading
// when it is earlier. g.mu is held.
func (g *replyGuard) readDeadline() time.Time {
	d := g.deadline
	if g.reading && (d.IsZero() || g.due.Before(d)) {
		d = g.due
	}
	return d
}

func (g *replyGuard) Read(p []byte) (int, error) {
	g.mu.Lock()
	g.reading = true
	g.due = time.Now().Add(g.timeout)
	err := g.Conn.SetReadDeadline(g.readDeadline())
	g.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reading = false
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(g.due) &&
		(g.deadline.IsZero() || g.deadline.After(g.due)) {
		return n, &net.OpError{Op: "read", Net: g.LocalAddr().Network(), Source: g.LocalAddr(), Addr: g.RemoteAddr(), Err: &ReplyTimeoutError{After: g.timeout}}
	}
	return n, err
}

func (g *replyGuard) Write(p []byte) (int, error) {
	n, err := g.Conn.Write(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reading && n > 0 {
		g.due = time.Now().Add(g.timeout)
		if err := g.Conn.SetReadDeadline(g.readDeadline()); err != nil {
			return n, err
		}
	}
	return n, err
}

func (g *replyGuard) SetDeadline(t time.Time) error {
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.SetReadDeadline(t)
}

func (g *replyGuard) SetReadDeadline(t time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deadline = t
	return g.Conn.SetReadDeadline(g.readDeadline())
}

// NetConn returns the guarded connection.
func (g *replyGuard) NetConn() net.Conn { return g.Conn }
