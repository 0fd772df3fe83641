// Package control owns the ibex control database: its versioned schema (embedded SQL
// migrations applied by Install/Upgrade) and every query against it. Nothing else in ibex
// writes SQL for the control database.
package control

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ibexrepl/ibex/internal/catalog"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/internal/sqlstate"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// Sentinel errors callers branch on.
var (
	ErrNotInstalled = errors.New("the ibex control schema is not installed")
	ErrSchemaOld    = errors.New("the ibex control schema is older than this ibex")
	ErrSchemaNew    = errors.New("the ibex control schema is newer than this ibex")
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInUse        = errors.New("in use")
)

// lockNamespace is the first key of the two-int advisory lock held while migrating (the
// second is 0). SyncLockNamespace, the next one, is the runs' of syncs.
const lockNamespace = 0x1be0

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() []migration {
	entries, err := fs.ReadDir(migrationFS, "migration")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		v, err := strconv.Atoi(n)
		if err != nil {
			panic("bad migration name " + e.Name())
		}
		b, err := migrationFS.ReadFile("migration/" + e.Name())
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms
}

// SchemaVersion is the control schema version this binary expects.
func SchemaVersion() int {
	ms := loadMigrations()
	return ms[len(ms)-1].version
}

// Store is the control database.
type Store struct {
	Pool   *pgxpool.Pool
	logger *slog.Logger
}

// Open connects to the control database named by dsn (libpq conninfo or URL; empty means
// the PG* environment variables). It does not check the schema version.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("control database: invalid IBEX_DSN: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "ibex"
	}
	if err := dbconn.Harden(&cfg.ConnConfig.Config); err != nil {
		return nil, fmt.Errorf("control database: IBEX_DSN: %w", err)
	}
	cfg.MaxConns = 4
	// One round trip a statement, as the dbs' sessions (dbconn.Config): the default mode
	// prepares each new statement first (a second round trip), and a short run sends
	// dozens of statements once each. Parameters then go as text, typed by their Go type:
	// maps are jsonb (the only map columns of the control tables).
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		tm := c.TypeMap()
		tm.RegisterDefaultPgType(map[string]any(nil), "jsonb")
		tm.RegisterDefaultPgType(map[string]string(nil), "jsonb")
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("control database: %w", err)
	}
	// Opening the first session is the check: its startup ends with the server ready for
	// queries (a ping would add a round trip before the first real statement).
	c, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("control database %s: cannot connect: %w", describe(cfg.ConnConfig), err)
	}
	c.Release()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{Pool: pool, logger: logger}, nil
}

func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("(host=%s port=%d dbname=%s user=%s)", c.Host, c.Port, c.Database, c.User)
}

// Close releases the pool.
func (s *Store) Close() { s.Pool.Close() }

// createSchema creates schema ibex and its version table. The schema is created only when
// missing: CREATE SCHEMA IF NOT EXISTS checks CREATE on the database even when the schema
// exists, and a DBA may have created it for ibex's role instead of granting that. A
// missing privilege is reported with the statement that grants it.
func createSchema(ctx context.Context, conn *pgx.Conn) error {
	cfg := conn.Config()
	db, role := catalog.SQLName(cfg.Database), catalog.SQLName(cfg.User)
	var pe *pgconn.PgError
	_, err := conn.Exec(ctx, `DO $d$ BEGIN IF to_regnamespace('ibex') IS NULL THEN CREATE SCHEMA ibex; END IF; END $d$`)
	if errors.As(err, &pe) && pe.Code == sqlstate.InsufficientPrivilege {
		return fmt.Errorf("creating schema ibex: %s: GRANT CREATE ON DATABASE %s TO %s, or have a DBA run CREATE SCHEMA ibex AUTHORIZATION %s", pe.Message, db, role, role)
	} else if err != nil {
		return fmt.Errorf("creating schema ibex: %w", err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS ibex.schema_version (
    version int PRIMARY KEY,
    name    text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now())`)
	if errors.As(err, &pe) && pe.Code == sqlstate.InsufficientPrivilege {
		return fmt.Errorf("creating the control tables in schema ibex: %s: as the schema's owner run GRANT USAGE, CREATE ON SCHEMA ibex TO %s, or ALTER SCHEMA ibex OWNER TO %s", pe.Message, role, role)
	} else if err != nil {
		return fmt.Errorf("creating the control tables in schema ibex: %w", err)
	}
	return nil
}

// installedVersion returns 0 when the schema is absent.
func installedVersion(ctx context.Context, q Batcher) (int, error) {
	b := &pgx.Batch{}
	vq := queueVersion(b)
	return vq.result(q.SendBatch(ctx, b).Close())
}

// versionQuery is the answer of the statements queueVersion queues.
type versionQuery struct {
	answered, exists, read bool
	v                      int
	existsErr, vErr        error
}

// queueVersion queues the two questions of the installed version: whether the version
// table exists and, when it does, the highest version (when it is absent, the second
// fails, and the statements queued after it are not run).
func queueVersion(b *pgx.Batch) *versionQuery {
	vq := &versionQuery{}
	b.Queue(`SELECT to_regclass('ibex.schema_version') IS NOT NULL`).QueryRow(func(r pgx.Row) error {
		vq.answered = true
		vq.existsErr = r.Scan(&vq.exists)
		return nil
	})
	b.Queue(`SELECT coalesce(max(version), 0) FROM ibex.schema_version`).QueryRow(func(r pgx.Row) error {
		vq.read = true
		vq.vErr = r.Scan(&vq.v)
		return nil
	})
	return vq
}

// result is the installed version (0: not installed); sendErr is the batch's error.
func (vq *versionQuery) result(sendErr error) (int, error) {
	switch {
	case !vq.answered: // not sent: a cancelled context, a lost connection
		return 0, fmt.Errorf("reading control schema version: %w", cmp.Or(sendErr, errors.New("no answer")))
	case vq.existsErr != nil:
		return 0, fmt.Errorf("reading control schema version: %w", vq.existsErr)
	case !vq.exists:
		return 0, nil
	case !vq.read:
		return 0, fmt.Errorf("reading control schema version: %w", cmp.Or(sendErr, errors.New("no answer")))
	case vq.vErr != nil:
		return 0, fmt.Errorf("reading control schema version: %w", vq.vErr)
	}
	return vq.v, nil
}

// Version returns the installed schema version (0: not installed).
func (s *Store) Version(ctx context.Context) (int, error) { return installedVersion(ctx, s.Pool) }

// Check returns nil when the installed schema matches this binary, else an error wrapping
// ErrNotInstalled, ErrSchemaOld or ErrSchemaNew that says which command fixes it.
func (s *Store) Check(ctx context.Context) error {
	v, err := s.Version(ctx)
	if err != nil {
		return err
	}
	return checkVersion(v)
}

// checkVersion is Check's verdict on installed version v.
func checkVersion(v int) error {
	want := SchemaVersion()
	switch {
	case v == 0:
		return fmt.Errorf("%w in this database: run 'ibex install' first", ErrNotInstalled)
	case v < want:
		return fmt.Errorf("%w (schema version %d, ibex needs %d): run 'ibex upgrade'", ErrSchemaOld, v, want)
	case v > want:
		return fmt.Errorf("%w (schema version %d, this ibex knows up to %d): use a newer ibex binary", ErrSchemaNew, v, want)
	}
	return nil
}

// Migrate applies every pending migration, each in its own transaction, under a session
// advisory lock so concurrent installs serialise. It returns the versions applied.
func (s *Store) Migrate(ctx context.Context, installing bool) ([]int, error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, 0)`, lockNamespace); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1, 0)`, lockNamespace)
	}()

	cur, err := installedVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	if cur == 0 && !installing {
		return nil, fmt.Errorf("%w in this database: run 'ibex install' first", ErrNotInstalled)
	}
	if cur > SchemaVersion() {
		return nil, fmt.Errorf("%w (schema version %d, this ibex knows up to %d): use a newer ibex binary", ErrSchemaNew, cur, SchemaVersion())
	}
	if cur == 0 {
		if err := createSchema(ctx, conn.Conn()); err != nil {
			return nil, err
		}
	}
	var applied []int
	for _, m := range loadMigrations() {
		if m.version <= cur {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO ibex.schema_version (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("applying control schema migration %s: %w", m.name, err)
		}
		s.logger.InfoContext(ctx, "applied migration", slog.Int("version", m.version), slog.String("name", m.name))
		applied = append(applied, m.version)
	}
	return applied, nil
}
