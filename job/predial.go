package job

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
)

// predials are the first sessions of a run's PostgreSQL dbs, opened once the run holds
// the sync's lock, while the control database records the run and reads the definition:
// opening a session (connection, authentication, a new server process) costs a short run
// more than those control statements, which it then overlaps. (Not before the lock: kicks
// racing for a busy sync would each open sessions for nothing, a storm of new server
// processes on a small machine.) The run reads its dbs again with the definition;
// member.dial takes a session only for a db whose name, connection keywords and password
// reference are still those it was opened with. Sessions no member took are closed at
// the end of the run (close).
//
// A run whose sessions come from a pool (Options.Sessions) opens none ahead.
type predials struct {
	mu     sync.Mutex
	byKey  map[string]*predial
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

type predial struct {
	done  chan struct{}
	c     *pgx.Conn
	err   error
	taken bool
}

// startPredials starts opening a session of every active PostgreSQL db of dbs.
func startPredials(ctx context.Context, dbs map[string]*control.DB) *predials {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &predials{byKey: map[string]*predial{}, cancel: cancel}
	for _, d := range dbs {
		if !d.Type.Postgres() || d.Status == control.StatusInactive {
			continue
		}
		pd := &predial{done: make(chan struct{})}
		p.byKey[predialKey(d.Name, d.Conn, d.Pass)] = pd
		p.wg.Go(func() {
			defer close(pd.done)
			pd.c, pd.err = dbconn.Connect(ctx, d.Name, d.Conn, d.Pass)
		})
	}
	return p
}

func predialKey(name string, conn map[string]string, pass string) string {
	return name + "\x00" + dbconn.ConnString(conn) + "\x00" + pass
}

// take returns the session opened ahead for db name with these settings, or the error
// opening it met, once it is known; ok is false when there is none (or it was taken).
func (p *predials) take(ctx context.Context, name string, conn map[string]string, pass string) (c *pgx.Conn, err error, ok bool) {
	if p == nil {
		return nil, nil, false
	}
	p.mu.Lock()
	pd := p.byKey[predialKey(name, conn, pass)]
	if pd == nil || pd.taken {
		p.mu.Unlock()
		return nil, nil, false
	}
	pd.taken = true
	p.mu.Unlock()
	select {
	case <-pd.done:
		return pd.c, pd.err, true
	case <-ctx.Done():
		// The session, when it opens, is closed with those nobody took.
		p.mu.Lock()
		pd.taken = false
		p.mu.Unlock()
		return nil, ctx.Err(), true
	}
}

// close stops the openings under way and closes the sessions nobody took.
func (p *predials) close() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pd := range p.byKey {
		if !pd.taken && pd.c != nil {
			closeConn(pd.c)
		}
	}
}
