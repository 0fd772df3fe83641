// Package targets opens the sink of a db that is not PostgreSQL, by its type: the one
// place that knows every such sink package. The command line and the YAML check a db's
// settings with CheckParams and test its connection with Ping; a run opens it with Open.
package targets

import (
	"context"
	"errors"
	"fmt"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/flatfile"
	"github.com/ibexrepl/ibex/sinks/mariadb"
	"github.com/ibexrepl/ibex/sinks/redis"
	"github.com/ibexrepl/ibex/sinks/sqlite"
)

// ErrPostgres is returned for a PostgreSQL db: it is written by sinks/postgres on the
// run's own session, not opened here.
var ErrPostgres = errors.New("a PostgreSQL db is not opened as a target sink")

type kind struct {
	check func(params map[string]string) error
	open  func(ctx context.Context, c sinks.Config) (Sink, error)
}

// kinds are the sink packages by db type (read only).
var kinds = map[control.DBType]kind{
	control.DBTypeMariaDB:  {check: mariadb.CheckParams, open: opened(mariadb.Open)},
	control.DBTypeMySQL:    {check: mariadb.CheckParams, open: opened(mariadb.Open)},
	control.DBTypeRedis:    {check: redis.CheckParams, open: opened(redis.Open)},
	control.DBTypeFlatfile: {check: flatfile.CheckParams, open: opened(flatfile.Open)},
	control.DBTypeSQLite:   {check: sqlite.CheckParams, open: opened(sqlite.Open)},
}

// opened adapts a package's Open (a nil *Sink with an error must not become a non-nil
// interface).
func opened[S Sink](open func(context.Context, sinks.Config) (S, error)) func(context.Context, sinks.Config) (Sink, error) {
	return func(ctx context.Context, c sinks.Config) (Sink, error) {
		s, err := open(ctx, c)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

func lookup(t control.DBType) (kind, error) {
	if t.Postgres() {
		return kind{}, ErrPostgres
	}
	k, ok := kinds[t]
	if !ok {
		return kind{}, fmt.Errorf("db type %q is not known (use one of %v)", t, control.DBTypes)
	}
	return k, nil
}

// CheckParams checks a db's settings for its type, without connecting.
func CheckParams(t control.DBType, params map[string]string) error {
	k, err := lookup(t)
	if err != nil {
		return err
	}
	return k.check(params)
}

// Sink is an open sink of a db that is not PostgreSQL: every such sink checks and
// creates its tables and owns its connection.
type Sink interface {
	sinks.Sink
	sinks.Checker
	sinks.Closer
}

// Open opens the sink of a db of type t.
func Open(ctx context.Context, t control.DBType, c sinks.Config) (Sink, error) {
	k, err := lookup(t)
	if err != nil {
		return nil, err
	}
	return k.open(ctx, c) // each package's Open checks the settings first
}

// Ping opens the sink and closes it: the connection test of 'ibex add db'.
func Ping(ctx context.Context, t control.DBType, c sinks.Config) error {
	s, err := Open(ctx, t, c)
	if err != nil {
		return err
	}
	return s.Close()
}
