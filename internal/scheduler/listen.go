package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// ListenApplicationName is the application_name of the scheduler's LISTEN connections.
const ListenApplicationName = "ibex scheduler listen"

// listener LISTENs on capture.KickChannel on one db and kicks the syncs the
// notifications name. It reconnects by itself, with backoff, when the connection is lost;
// after each (re)connection it kicks every autokick sync that has this db as a source,
// since changes may have committed while nobody listened.
type listener struct {
	s        *Scheduler
	db       string
	def      dbDef
	stop     context.CancelFunc
	done     chan struct{}
	failures int // consecutive failed attempts; only the Listen goroutine touches it
}

func (s *Scheduler) startListener(ctx context.Context, db string, d dbDef) *listener {
	ctx, cancel := context.WithCancel(ctx)
	l := &listener{s: s, db: db, def: d, stop: cancel, done: make(chan struct{})}
	pl := &pgxlisten.Listener{
		Connect:        l.connect,
		LogError:       l.logError,
		ReconnectDelay: -1, // connect backs off by itself
	}
	pl.Handle(capture.KickChannel, l)
	s.met.Listening.WithLabelValues(db).Set(0)
	s.log.Debug("listening for autokick", slog.String("db", db))
	go func() {
		defer close(l.done)
		_ = pl.Listen(ctx)
		s.met.Listening.WithLabelValues(db).Set(0)
	}()
	return l
}

// connect opens the LISTEN connection, after a backoff delay when the last attempts failed.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	if l.failures > 0 {
		d := 250 * time.Millisecond << min(l.failures-1, 10)
		d = min(d, l.s.cfg.ListenBackoffMax)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	l.failures++
	cfg, err := dbconn.Config(l.db, l.def.conn, l.def.pass)
	if err != nil {
		return nil, err
	}
	if _, ok := l.def.conn["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = ListenApplicationName
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, errors.New("cannot connect to " + dbconn.Target(l.db, cfg) + ": " + dbconn.Reason(err))
	}
	return c, nil
}

func (l *listener) logError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	l.s.met.Listening.WithLabelValues(l.db).Set(0)
	l.s.log.Warn("autokick: LISTEN connection lost or refused; reconnecting", slog.String("db", l.db),
		slog.Int("attempt", l.failures), slog.String("error", err.Error()))
}

// HandleBacklog runs once LISTEN is in place on a new connection.
func (l *listener) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	if l.failures > 1 {
		l.s.log.Info("autokick: listening again", slog.String("db", l.db))
	}
	l.failures = 0
	l.s.met.Listening.WithLabelValues(l.db).Set(1)
	for _, name := range l.s.syncsWithSource(l.db) {
		l.s.kick(name, false)
	}
	return nil
}

// HandleNotification kicks the sync a notification names.
func (l *listener) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	name := n.Payload
	if l.s.kick(name, false) {
		l.s.met.Kicks.WithLabelValues(name).Inc()
		l.s.log.Debug("autokick", slog.String("sync", name), slog.String("db", l.db))
	}
	return nil
}
