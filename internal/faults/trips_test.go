package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/ibextest"
	"github.com/ibexrepl/ibex/internal/pgtest"
	"github.com/ibexrepl/ibex/job"
)

// tripProxy is a TCP proxy in front of a PostgreSQL server that counts the sessions
// opened through it and the round trips made on them, and can delay every reply.
//
// A round trip is counted each time a client sends after it last received (or sends
// first on a new session): statements sent together without waiting for their replies (a
// pipeline, several statements in one simple query, COPY data) are one round trip, a
// statement that waits for its reply before the next is sent is one each. Opening a
// session is one (the startup message; trust authentication, no TLS).
type tripProxy struct {
	ln       net.Listener
	upstream string
	delay    time.Duration

	mu       sync.Mutex
	sessions int
	trips    int
	// spans are the round trips' times (from the send to the first reply's delivery),
	// for the critical path (chain).
	spans []span
	log   []string // with IBEX_TRIPS_LOG=1: what each round trip sent first
	wg    sync.WaitGroup
}

func newTripProxy(t *testing.T, upstream string, delay time.Duration) *tripProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tripProxy{ln: ln, upstream: upstream, delay: delay}
	if os.Getenv("IBEX_TRIPS_LOG") == "1" {
		p.log = []string{}
	}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close() })
	return p
}

func (p *tripProxy) addr() (host, port string) {
	host, port, _ = net.SplitHostPort(p.ln.Addr().String())
	return host, port
}

// counts returns the sessions opened and round trips made so far, and zeroes them.
func (p *tripProxy) counts() (sessions, trips int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sessions, trips = p.sessions, p.trips
	p.sessions, p.trips = 0, 0
	p.spans = nil
	if p.log != nil {
		for _, l := range p.log {
			fmt.Fprintf(os.Stderr, "%s trip: %s\n", p.ln.Addr(), l)
		}
		p.log = p.log[:0]
	}
	return sessions, trips
}

func (p *tripProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *tripProxy) handle(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	p.mu.Lock()
	p.sessions++
	p.mu.Unlock()
	// received: the client got data since it last sent (it is waiting no more).
	var mu sync.Mutex
	received := true
	open := -1 // the span of the round trip waiting for its reply, in p.spans
	done := make(chan struct{}, 2)
	go func() { // client -> server
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				mu.Lock()
				// Terminate ('X', 5 bytes) waits for no reply.
				if received && !(n == 5 && buf[0] == 'X') {
					p.mu.Lock()
					p.trips++
					p.spans = append(p.spans, span{start: time.Now()})
					open = len(p.spans) - 1
					if p.log != nil {
						p.log = append(p.log, fmt.Sprintf("%p %s", client, describeMsg(buf[:n])))
					}
					p.mu.Unlock()
					received = false
				}
				mu.Unlock()
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if c, ok := server.(*net.TCPConn); ok {
					_ = c.CloseWrite()
				}
				return
			}
		}
	}()
	go func() { // server -> client, each chunk delayed
		defer func() { done <- struct{}{} }()
		type chunk struct {
			b   []byte
			due time.Time
		}
		q := make(chan chunk, 1024)
		go func() {
			defer client.Close()
			for c := range q {
				time.Sleep(time.Until(c.due))
				// Marked before the client can see it: its next send then counts.
				mu.Lock()
				received = true
				if open >= 0 {
					p.mu.Lock()
					if open < len(p.spans) && p.spans[open].end.IsZero() {
						p.spans[open].end = time.Now()
					}
					p.mu.Unlock()
					open = -1
				}
				mu.Unlock()
				if _, err := client.Write(c.b); err != nil {
					for range q {
					}
					return
				}
			}
		}()
		defer close(q)
		for {
			buf := make([]byte, 64<<10)
			n, err := server.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(p.delay)}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					_ = client.Close()
				}
				return
			}
		}
	}()
	<-done
}

// span is one round trip's time.
type span struct{ start, end time.Time }

// takeSpans returns the round trips' spans so far (those answered).
func (p *tripProxy) takeSpans() []span {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []span
	for _, s := range p.spans {
		if !s.end.IsZero() {
			out = append(out, s)
		}
	}
	return out
}

// chain is the length of the longest chain of round trips each sent after the previous
// one's reply came: the round trips a run waits for one after another (its critical
// path), whatever the sessions they are made on. Round trips made at the same time on
// several sessions count once.
func chain(spans []span) int {
	sort.Slice(spans, func(i, j int) bool { return spans[i].end.Before(spans[j].end) })
	best := make([]int, len(spans))
	longest := 0
	for i, s := range spans {
		best[i] = 1
		for j := 0; j < i; j++ {
			if !spans[j].end.After(s.start) && best[j]+1 > best[i] {
				best[i] = best[j] + 1
			}
		}
		longest = max(longest, best[i])
	}
	return longest
}

// describeMsg names the first protocol message of b (a round trip's first bytes).
func describeMsg(b []byte) string {
	if len(b) < 5 {
		return fmt.Sprintf("%q", b)
	}
	switch b[0] {
	case 'Q', 'P':
		body := b[5:]
		if b[0] == 'P' { // statement name, then the query
			if i := bytes.IndexByte(body, 0); i >= 0 {
				body = body[i+1:]
			}
		}
		if i := bytes.IndexByte(body, 0); i >= 0 {
			body = body[:i]
		}
		if len(body) > 150 {
			body = body[:150]
		}
		return string(b[0]) + " " + strings.Join(strings.Fields(string(body)), " ")
	case 'd', 'c':
		return "COPY data"
	}
	if b[0] == 0 {
		return "startup"
	}
	return fmt.Sprintf("message %q", b[0])
}

// tripsEnv is a sync s of tables t1..tN from db a (source) to db b (target), each db and
// the control database reached through a tripProxy delaying replies by delay.
type tripsEnv struct {
	e       *env
	dsns    map[string]string
	proxies map[string]*tripProxy // a, b, and ctl
	ctlDSN  string
}

func newTripsEnv(t *testing.T, tables int, delay time.Duration, ctlDelay time.Duration) *tripsEnv {
	te := &tripsEnv{e: newEnv(t, pgtest.ClusterOptions{}), dsns: map[string]string{}, proxies: map[string]*tripProxy{}}
	e := te.e
	for _, name := range []string{"a", "b"} {
		d := e.ctl.CreateDB(name)
		te.dsns[name] = d.DSN
		for i := 1; i <= tables; i++ {
			ibextest.Exec(t, d.DSN, fmt.Sprintf(`CREATE TABLE t%d (id int PRIMARY KEY, v text)`, i))
		}
		conn := maps.Clone(d.Conn)
		p := newTripProxy(t, net.JoinHostPort(conn["host"], conn["port"]), delay)
		te.proxies[name] = p
		conn["host"], conn["port"] = p.addr()
		conn["sslmode"] = "disable"
		e.must(ibextest.AddDBArgs(name, conn)...)
	}
	add := []string{"add", "table"}
	for i := 1; i <= tables; i++ {
		add = append(add, fmt.Sprintf("t%d", i))
	}
	e.must(append(add, "db=a", "herd=h")...)
	e.must("add", "sync", "s", "herd=h", "dbs=a:source,b:target")
	// The control database through a proxy too: IBEX_DSN with its host and port.
	cp := newTripProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(e.ctl.Port)), ctlDelay)
	te.proxies["ctl"] = cp
	h, pt := cp.addr()
	te.ctlDSN = fmt.Sprintf("host=%s port=%s user=postgres dbname=ibexctl sslmode=disable", h, pt)
	return te
}

// tripsRun is what one run cost: its wall time (from opening the control database, as
// `ibex kick` does, to closing it), and per proxy the sessions opened and round trips.
type tripsRun struct {
	wall     time.Duration
	sessions map[string]int
	trips    map[string]int
	// chainDBs and chainAll are the round trips made one after another (chain) to the
	// dbs, and to the dbs and the control database.
	chainDBs, chainAll int
	phases             string
}

func (r tripsRun) String() string {
	return fmt.Sprintf("%s; sessions a %d, b %d, control %d; round trips a %d, b %d, control %d; one after another: %d to the dbs, %d with the control database's",
		r.wall.Round(time.Millisecond), r.sessions["a"], r.sessions["b"], r.sessions["ctl"], r.trips["a"], r.trips["b"], r.trips["ctl"], r.chainDBs, r.chainAll)
}

// run changes one row of t1 (key k) and runs the sync as a fresh process would: a new
// control store, job.Run, the store closed.
func (te *tripsEnv) run(t *testing.T, k int) tripsRun {
	t.Helper()
	ibextest.Exec(t, te.dsns["a"], `INSERT INTO t1 VALUES ($1, 'x')`, k)
	for _, p := range te.proxies {
		p.counts()
	}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	s, err := control.Open(ctx, te.ctlDSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Run(ctx, s, "s", job.Options{Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	s.Close()
	wall := time.Since(t0)
	if err != nil || res.State != control.StateGood || res.Inserts != 1 {
		t.Fatalf("run: %+v, %v\n%s", res, err, log.String())
	}
	// Let the proxies see the sessions' last bytes.
	time.Sleep(50 * time.Millisecond)
	out := tripsRun{wall: wall, sessions: map[string]int{}, trips: map[string]int{}}
	var dbSpans, all []span
	for name, p := range te.proxies {
		sp := p.takeSpans()
		all = append(all, sp...)
		if name != "ctl" {
			dbSpans = append(dbSpans, sp...)
		}
		out.sessions[name], out.trips[name] = p.counts()
	}
	out.chainDBs, out.chainAll = chain(dbSpans), chain(all)
	for _, l := range strings.Split(log.String(), "\n") {
		if i := strings.Index(l, "load="); i >= 0 && strings.Contains(l, "msg=ready") {
			out.phases = l[i:]
		}
	}
	return out
}

// TestRunRoundTrips counts, exactly, the sessions and round trips of a run that has one
// changed row to apply, from a source to a target, with 20 tables in the herd: what a run
// costs over a network, where each round trip is a network's latency. Every reply is
// delayed by 20 ms, so that round trips made at once on several sessions overlap, and the
// chain of round trips made one after another (the run's critical path) is counted too.
// The bounds are today's counts (before the sessions were shared, the short key lists
// written into statements and the control statements sent in one round trip each: 13,
// 11 and 44 round trips, 2, 1 and 2 sessions, 16 to 18 one after another to the dbs; the
// control database's 11 until its opening stopped pinging and the unlock went with the
// run's end, 9 until the lock went with reading the sync, 8 until the version check did
// too, 7 until the herd's sequences were read with the sync's definition, 6 until the
// run was recorded in that round trip too): a change that adds round trips to a short run
// fails here.
func TestRunRoundTrips(t *testing.T) {
	t.Parallel()
	te := newTripsEnv(t, 20, 20*time.Millisecond, 20*time.Millisecond)
	mustState(t, te.e.store(), "s", job.Options{}, control.StateEmpty)
	for r := 1; r <= 3; r++ {
		got := te.run(t, r)
		t.Logf("run %d, 20 tables, one row changed: %s", r, got)
		for name, max := range map[string]int{"a": 7, "b": 7, "ctl": 5} {
			if got.trips[name] > max {
				t.Errorf("run %d: %d round trips to %s, want at most %d", r, got.trips[name], name, max)
			}
			if got.sessions[name] > 1 {
				t.Errorf("run %d: %d sessions opened on %s, want 1", r, got.sessions[name], name)
			}
		}
		// Issue 18: at most 12 round trips one after another to the dbs.
		if got.chainDBs > 12 {
			t.Errorf("run %d: %d round trips one after another to the dbs, want at most 12", r, got.chainDBs)
		}
	}
	if n := count(t, te.dsns["b"], "t1"); n != 3 {
		t.Errorf("b's t1 has %d rows, want 3", n)
	}
}
