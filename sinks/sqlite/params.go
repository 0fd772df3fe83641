package sqlite

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ibexrepl/ibex/sinks"
)

// The params of a sqlite db (ibex add db NAME type=sqlite path=FILE ...).
const (
	paramPath           = "path"            // the database file (required; created when missing)
	paramBusyTimeout    = "busy_timeout"    // ms a statement waits for another writer's lock (default 10000)
	paramConnectTimeout = "connect_timeout" // s Open may take (default 10)
	paramJournal        = "journal"         // wal or delete; unset: the file's mode is left as it is
)

var allowedParams = []string{paramBusyTimeout, paramConnectTimeout, paramJournal, paramPath}

// params are a db's params, checked.
type params struct {
	path           string // absolute
	busyTimeout    time.Duration
	connectTimeout time.Duration
	journal        string // "", "wal" or "delete"
}

// CheckParams checks the params a user gave for a sqlite db, without opening it.
func CheckParams(p map[string]string) error {
	_, err := parseParams(p)
	return err
}

func parseParams(p map[string]string) (params, error) {
	out := params{busyTimeout: 10 * time.Second, connectTimeout: 10 * time.Second}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if err := sinks.CheckSettings("sqlite", p, allowedParams); err != nil {
		return params{}, err
	}
	path, ok := p[paramPath]
	if !ok || path == "" {
		return params{}, fmt.Errorf("sqlite: parameter %s (the database file) is required", paramPath)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return params{}, fmt.Errorf("sqlite: parameter %s: %w", paramPath, err)
	}
	out.path = abs
	if v, ok := p[paramBusyTimeout]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 24*3600*1000 {
			return params{}, fmt.Errorf("sqlite: parameter %s: %q is not a number of milliseconds (0 to 86400000)", paramBusyTimeout, v)
		}
		out.busyTimeout = time.Duration(n) * time.Millisecond
	}
	if v, ok := p[paramConnectTimeout]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return params{}, fmt.Errorf("sqlite: parameter %s: %q is not a number of seconds (1 to 3600)", paramConnectTimeout, v)
		}
		out.connectTimeout = time.Duration(n) * time.Second
	}
	if v, ok := p[paramJournal]; ok {
		switch v {
		case "wal", "delete":
			out.journal = v
		default:
			return params{}, fmt.Errorf("sqlite: parameter %s: %q is not wal or delete", paramJournal, v)
		}
	}
	return out, nil
}

// dsn is the driver's name of the file: a file: URI, every byte that is not plainly
// safe percent-encoded (a path may hold ?, # or %), and no query (the pragmas are set
// on the connection).
func dsn(path string) string {
	var b strings.Builder
	b.WriteString("file:")
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
