package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/internal/control"
	"github.com/ibexrepl/ibex/internal/dbconn"
	"github.com/ibexrepl/ibex/job"
	"github.com/ibexrepl/ibex/sinks"
	"github.com/ibexrepl/ibex/sinks/targets"
)

// targetAliases are Bucardo's spellings of the settings of a db that is not PostgreSQL
// (db= is a Redis db number there, not dbname).
var targetAliases = map[string]string{"dbhost": "host", "dbport": "port", "dbuser": "user", "dbpass": "pass", "password": "pass", "dbdir": "path"}

// pingTimeout bounds the connection test of a db that is not PostgreSQL.
const pingTimeout = 15 * time.Second

func joinTypes() string {
	var out []string
	for _, t := range control.DBTypes {
		out = append(out, string(t))
	}
	return strings.Join(out, ", ")
}

// putTargetDB adds or updates a db that is not PostgreSQL (a target only): its settings
// are its sink's, checked by the sink's package, and its connection is tested unless
// force.
func (a *app) putTargetDB(ctx context.Context, store *control.Store, create bool, d *control.DB, p kv, force bool) error {
	name := d.Name
	for _, k := range p.keys {
		v, ok := p.vals[k]
		if !ok {
			continue // taken
		}
		if al, ok := targetAliases[k]; ok {
			k = al
		}
		switch k {
		case "pass":
			if err := dbconn.CheckPass(v); err != nil {
				return usageErr("db %s: %v", name, err)
			}
			d.Pass = v
		case "status":
			if !control.Status(v).Valid() {
				return usageErr("db %s: status must be active or inactive, not %q", name, v)
			}
			d.Status = control.Status(v)
		default:
			if v == "" {
				delete(d.Conn, k)
			} else {
				d.Conn[k] = v
			}
		}
	}
	if err := targets.CheckParams(d.Type, d.Conn); err != nil {
		return usageErr("db %s (type %s): %v", name, d.Type, err)
	}
	if !force {
		if err := pingTarget(ctx, d); err != nil {
			return fmt.Errorf("%w; fix the settings, or add --force to save them untested", err)
		}
	}
	if err := store.InTx(ctx, func(q control.Querier) error { return control.PutDB(ctx, q, d, create) }); err != nil {
		return err
	}
	if create {
		a.say("Added db %s (type %s)", name, d.Type)
	} else {
		a.say("Updated db %s (type %s)", name, d.Type)
	}
	return nil
}

// pingTarget tests the connection of a db that is not PostgreSQL, in bounded time.
func pingTarget(ctx context.Context, d *control.DB) error {
	pass, err := dbconn.ResolvePass(d.Pass)
	if err != nil {
		return fmt.Errorf("db %s: %w", d.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := targets.Ping(ctx, d.Type, sinks.Config{DB: d.Name, Params: d.Conn, Password: pass}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("db %s: no answer within %s: %w", d.Name, pingTimeout, err)
		}
		return err
	}
	return nil
}

// needPostgres refuses a db that is not PostgreSQL where ibex must read a PostgreSQL
// catalog (tables are read from a PostgreSQL db).
func needPostgres(d *control.DB, what string) error {
	if d.Type.Postgres() {
		return nil
	}
	return usageErr("db %s is a %s db: %s needs a PostgreSQL db", d.Name, d.Type, what)
}

// sayMissing warns of the tables that targets which are not PostgreSQL lack: runs leave
// such a db out until they exist.
func (a *app) sayMissing(res *job.ValidateResult) {
	for _, m := range res.Missing {
		a.say("Warning: %s (runs leave that db out until then)", m)
	}
}
