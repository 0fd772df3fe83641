package control

import (
	"fmt"
	"slices"
)

// The words of the control model and the rules of a dbgroup, in one place: the command
// line, ibex apply and the store itself (PutDBGroup) use these and no others. The control
// schema's CHECK constraints allow the same values.

// Roles of a db in a dbgroup.
const (
	RoleSource   = "source"   // written by applications: its changes are captured and sent to the others
	RoleTarget   = "target"   // receives the sources' changes, writes none
	RoleFullcopy = "fullcopy" // receives the one source's tables whole on every run
)

// Roles are the roles of a db in a dbgroup, in the order users are told them.
var Roles = []string{RoleSource, RoleTarget, RoleFullcopy}

// Status says whether a db or a sync takes part: runs skip an inactive db, and an inactive
// sync is not run unless forced.
type Status string

// Statuses of a db or a sync.
const (
	StatusActive   Status = "active"
	StatusInactive Status = "inactive"
)

// Valid reports whether s is a status.
func (s Status) Valid() bool { return s == StatusActive || s == StatusInactive }

// States of a run as ibex.run records it.
const (
	StateRunning = "running"
	StateGood    = "good"
	StateBad     = "bad"
	StateEmpty   = "empty"
)

// Outcomes of asking for a run that are not runs: nothing is recorded in ibex.run.
const (
	StateAlreadyRunning = "already running" // another run of the sync holds its lock
	StateInactive       = "inactive"        // the sync is inactive and the run was not forced
)

// MaxDBs is the most dbs a dbgroup may have: a run tracks the receivers of each change in
// 64-bit masks.
const MaxDBs = 64

// Check applies the rules of a dbgroup: at least one db, each with a known role, at most
// MaxDBs, at least one source, and a fullcopy dbgroup has exactly one source and only
// fullcopy dbs besides. (A db listed twice is refused when the dbgroup is stored.)
func (g *DBGroup) Check() error {
	var sources, targets, full int
	for _, m := range g.Members {
		switch m.Role {
		case RoleSource:
			sources++
		case RoleTarget:
			targets++
		case RoleFullcopy:
			full++
		default:
			return fmt.Errorf("dbgroup %s: unknown role %q for db %s: use source, target or fullcopy", g.Name, m.Role, m.DB)
		}
	}
	switch {
	case len(g.Members) == 0:
		return fmt.Errorf("dbgroup %s: list its dbs as name:role (source, target or fullcopy)", g.Name)
	case len(g.Members) > MaxDBs:
		return fmt.Errorf("dbgroup %q has %d dbs: a dbgroup has at most %d", g.Name, len(g.Members), MaxDBs)
	case sources == 0:
		return fmt.Errorf("dbgroup %s has no source: give at least one db the role source", g.Name)
	case full > 0 && (sources != 1 || targets > 0):
		return fmt.Errorf("dbgroup %s: a fullcopy dbgroup has exactly one source and only fullcopy dbs besides", g.Name)
	}
	return nil
}

// DBType is the kind of database a db is.
type DBType string

// The db types. Only PostgreSQL dbs can be sources (capture is PostgreSQL triggers); the
// others are targets, written through their sink (package sinks).
const (
	DBTypePostgres DBType = "postgres"
	DBTypeMariaDB  DBType = "mariadb"
	DBTypeMySQL    DBType = "mysql"
	DBTypeSQLite   DBType = "sqlite"
	DBTypeRedis    DBType = "redis"
	DBTypeFlatfile DBType = "flatfile"
)

// DBTypes lists the db types, PostgreSQL first.
var DBTypes = []DBType{DBTypePostgres, DBTypeMariaDB, DBTypeMySQL, DBTypeSQLite, DBTypeRedis, DBTypeFlatfile}

// Valid says whether t is a db type ibex knows.
func (t DBType) Valid() bool { return slices.Contains(DBTypes, t) }

// String is the type's name; the empty type is PostgreSQL's.
func (t DBType) String() string {
	if t == "" {
		return string(DBTypePostgres)
	}
	return string(t)
}

// Postgres says whether a db of type t is PostgreSQL (the empty type is).
func (t DBType) Postgres() bool { return t == "" || t == DBTypePostgres }

// CheckTypes refuses a db that is not PostgreSQL as a source, or as the dbgroup's only
// db; typeOf gives each member's type.
func (g *DBGroup) CheckTypes(typeOf func(db string) DBType) error {
	for _, m := range g.Members {
		t := typeOf(m.DB)
		if t.Postgres() {
			continue
		}
		if len(g.Members) == 1 {
			return fmt.Errorf("dbgroup %s: db %s (type %s) cannot be its only db: a %s db is a target only, and a dbgroup needs a PostgreSQL source", g.Name, m.DB, t, t)
		}
		if m.Role == RoleSource {
			return fmt.Errorf("dbgroup %s: db %s (type %s) cannot be a source: ibex captures changes with PostgreSQL triggers, so only PostgreSQL dbs are sources; give it the role target or fullcopy", g.Name, m.DB, t)
		}
	}
	return nil
}

// Sources are the names of the dbgroup's sources, in its order.
func (g *DBGroup) Sources() []string {
	var out []string
	for _, m := range g.Members {
		if m.Role == RoleSource {
			out = append(out, m.DB)
		}
	}
	return out
}

// DBs are the names of the dbgroup's dbs, in its order.
func (g *DBGroup) DBs() []string {
	out := make([]string, 0, len(g.Members))
	for _, m := range g.Members {
		out = append(out, m.DB)
	}
	return out
}
