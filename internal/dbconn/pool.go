package dbconn

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pool keeps the sessions of a long-lived process (the scheduler) between the runs it
// starts: a run borrows a db's sessions from it instead of opening new ones, and gives
// them back when it ends. Opening a session costs a short run more than all its
// statements: the connection and authentication, then a new server process whose catalog
// caches are empty, so that describing the tables takes several times longer than on a
// session that has described them before.
//
// A session given back is reset to the state of a new one (ResetSQL: settings,
// temporary tables, advisory locks, cursors, prepared statements, LISTENs) before it is
// lent again, so a run relies on nothing an earlier run left in memory: it reads its
// definition, watermarks and table descriptions again; the server keeps its own catalog
// caches current. A session that is not idle (a transaction or a statement still open,
// or a failed reset) is closed instead. A borrowed session may have been closed by the
// server meanwhile (a restart, an idle timeout): callers open a new one when the first
// statement on a borrowed session fails (Get says whether it was borrowed).
//
// The zero value is not usable; make one with NewPool. Its methods are safe for
// concurrent use.
type Pool struct {
	maxIdle     int
	idleTimeout time.Duration

	mu        sync.Mutex
	cond      *sync.Cond
	idle      map[string][]idleConn
	resetting map[string]int // sessions being reset, by key
	closed    bool
}

type idleConn struct {
	c     *pgx.Conn
	since time.Time
}

// ResetSQL brings a session back to the state of a new one: DISCARD ALL's statements
// (which cannot itself run in the one round trip of several statements, an implicit
// transaction), but DISCARD PLANS: the server invalidates a cached plan itself when the
// catalog changes under it.
const ResetSQL = `CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES`

// resetTimeout bounds the reset of a session given back.
const resetTimeout = 5 * time.Second

// NewPool makes a pool that keeps up to maxIdle idle sessions per db and closes those
// idle for longer than idleTimeout (at Prune, Get and Put).
func NewPool(maxIdle int, idleTimeout time.Duration) *Pool {
	p := &Pool{maxIdle: max(maxIdle, 1), idleTimeout: idleTimeout, idle: map[string][]idleConn{}, resetting: map[string]int{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// poolKey identifies a db's sessions: its name, its connection keywords and its password
// reference (never the password). A db whose settings change gets new sessions; the old
// ones are closed once idle for too long.
func poolKey(name string, conn map[string]string, pass string) string {
	return name + "\x00" + ConnString(conn) + "\x00" + pass
}

// Get lends a session of db name (see Connect): an idle one when there is one (reused
// true), else, after waiting for a session being reset, a new one.
func (p *Pool) Get(ctx context.Context, name string, conn map[string]string, pass string) (c *pgx.Conn, reused bool, err error) {
	key := poolKey(name, conn, pass)
	var stale []*pgx.Conn
	p.mu.Lock()
	for {
		stale = append(stale, p.expireLocked(time.Now())...)
		if n := len(p.idle[key]); n > 0 && !p.closed {
			// The most recently used first: the others go stale and are closed.
			c = p.idle[key][n-1].c
			p.idle[key] = p.idle[key][:n-1]
			break
		}
		if p.resetting[key] == 0 || p.closed || ctx.Err() != nil {
			break
		}
		p.cond.Wait() // a reset ends within resetTimeout
	}
	p.mu.Unlock()
	closeAll(stale)
	if c != nil {
		return c, true, nil
	}
	c, err = Connect(ctx, name, conn, pass)
	return c, false, err
}

// Put gives back a session Get lent (or one opened with Connect for the same db): it is
// reset in the background and kept for the next Get, or closed when it is not idle, the
// reset fails, the pool holds enough sessions of the db or is closed.
func (p *Pool) Put(name string, conn map[string]string, pass string, c *pgx.Conn) {
	if c == nil {
		return
	}
	pc := c.PgConn()
	if c.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I' {
		closeConn(c)
		return
	}
	key := poolKey(name, conn, pass)
	p.mu.Lock()
	if p.closed || len(p.idle[key])+p.resetting[key] >= p.maxIdle {
		p.mu.Unlock()
		closeConn(c)
		return
	}
	p.resetting[key]++
	p.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
		_, err := ExecAll(ctx, c, ResetSQL)
		cancel()
		p.mu.Lock()
		p.resetting[key]--
		keep := err == nil && !p.closed
		if keep {
			p.idle[key] = append(p.idle[key], idleConn{c: c, since: time.Now()})
		}
		stale := p.expireLocked(time.Now())
		p.cond.Broadcast()
		p.mu.Unlock()
		if !keep {
			closeConn(c)
		}
		closeAll(stale)
	}()
}

// Prune closes the sessions idle for longer than the pool's idle timeout.
func (p *Pool) Prune() {
	p.mu.Lock()
	stale := p.expireLocked(time.Now())
	p.mu.Unlock()
	closeAll(stale)
}

// Idle returns the number of idle sessions the pool holds.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, cs := range p.idle {
		n += len(cs)
	}
	return n
}

// Close closes the idle sessions; sessions given back later are closed too. It waits for
// the resets under way.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*pgx.Conn
	for k, cs := range p.idle {
		for _, ic := range cs {
			all = append(all, ic.c)
		}
		delete(p.idle, k)
	}
	p.cond.Broadcast()
	for p.anyResetting() {
		p.cond.Wait()
	}
	p.mu.Unlock()
	closeAll(all)
}

func (p *Pool) anyResetting() bool {
	for _, n := range p.resetting {
		if n > 0 {
			return true
		}
	}
	return false
}

// expireLocked takes out of the pool the sessions idle since before now - idleTimeout
// and returns them (to be closed outside the lock).
func (p *Pool) expireLocked(now time.Time) []*pgx.Conn {
	var out []*pgx.Conn
	for k, cs := range p.idle {
		kept := cs[:0]
		for _, ic := range cs {
			if now.Sub(ic.since) > p.idleTimeout {
				out = append(out, ic.c)
			} else {
				kept = append(kept, ic)
			}
		}
		if len(kept) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = kept
		}
	}
	return out
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.Close(ctx)
	cancel()
}

func closeAll(cs []*pgx.Conn) {
	for _, c := range cs {
		closeConn(c)
	}
}
