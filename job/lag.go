package job

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/capture"
	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// SourceLag is how far behind a sync's receivers are with one source's changes: the
// change rows captured there and not yet consumed by a run (a run consumes them once
// every receiver has them), and the age of the oldest.
type SourceLag struct {
	DB      string `json:"db"`
	Pending int64  `json:"pending"`
	// Oldest is the capture time of the oldest pending change (nil: none).
	Oldest *time.Time `json:"oldest,omitempty"`
	// OldestSeconds is its age when it was read (0: none).
	OldestSeconds float64 `json:"oldest_seconds"`
	// Error says why the source could not be read (then the counts are 0).
	Error string `json:"error,omitempty"`
}

// LagConnectTimeout bounds the connection to each source when reading lag.
const LagConnectTimeout = 5 * time.Second

// Lag reads the lag of every PostgreSQL source of sync syncName, the sources in
// parallel. A source that cannot be read has its Error set; the error returned is for the
// sync itself (unknown, control database).
func Lag(ctx context.Context, store *control.Store, syncName string, logger *slog.Logger) ([]SourceLag, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sync, err := control.GetSync(ctx, store.Q(), syncName)
	if err != nil {
		return nil, err
	}
	s := &session{store: store, sync: sync, logger: logger}
	if err := s.load(ctx, store.Q()); err != nil {
		return nil, err
	}
	if s.fullcopy {
		return nil, nil // no capture: nothing is pending
	}
	var srcs []*member
	for _, m := range s.members {
		if m.isSource() && m.pg() && m.db.Status != control.StatusInactive {
			srcs = append(srcs, m)
		}
	}
	out := make([]SourceLag, len(s.members))
	s.each(srcs, func(m *member) error {
		l := &out[m.idx]
		l.DB = m.name
		if err := sourceLag(ctx, s, m, l); err != nil {
			l.Error = err.Error()
		}
		return nil
	})
	var lags []SourceLag
	for _, m := range srcs {
		lags = append(lags, out[m.idx])
	}
	return lags, nil
}

func sourceLag(ctx context.Context, s *session, m *member, l *SourceLag) error {
	cctx, cancel := context.WithTimeout(ctx, LagConnectTimeout)
	defer cancel()
	conn, err := dbconn.Connect(cctx, m.name, m.db.Conn, m.db.Pass)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	b := &pgx.Batch{}
	counts := make([]int64, len(s.tables))
	oldest := make([]*time.Time, len(s.tables))
	for i, t := range s.tables {
		b.Queue(capture.PendingStats(t.change)).QueryRow(func(r pgx.Row) error { return r.Scan(&counts[i], &oldest[i]) })
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("db %s: reading pending changes: %w", m.name, err)
	}
	for i := range s.tables {
		l.Pending += counts[i]
		if o := oldest[i]; o != nil && (l.Oldest == nil || o.Before(*l.Oldest)) {
			l.Oldest = o
		}
	}
	if l.Oldest != nil {
		l.OldestSeconds = max(time.Since(*l.Oldest).Seconds(), 0)
	}
	return nil
}
