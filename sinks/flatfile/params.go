package flatfile

import (
	"fmt"
	"slices"

	"github.com/ibexrepl/ibex/sinks"
)

// The params of a flatfile db (`ibex add db NAME type=flatfile path=DIR ...`).
const (
	// ParamPath is the directory the files go to (required); created, mode 0700, when
	// missing.
	ParamPath = "path"
	// ParamDialect is the SQL written: postgres (the default) or mysql.
	ParamDialect = "dialect"
	// ParamFsync is on (the default) or off: whether Commit fsyncs each file, the
	// directory and the key index before it returns.
	ParamFsync = "fsync"
)

var allowed = []string{ParamDialect, ParamFsync, ParamPath}

// params is a flatfile db's checked settings.
type params struct {
	path    string
	dialect Dialect
	fsync   bool
}

// CheckParams checks the params a user gave a flatfile db, without touching the
// directory.
func CheckParams(p map[string]string) error {
	_, err := parseParams(p)
	return err
}

func parseParams(p map[string]string) (params, error) {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if err := sinks.CheckSettings("flatfile", p, allowed); err != nil {
		return params{}, err
	}
	out := params{path: p[ParamPath], dialect: Postgres, fsync: true}
	if out.path == "" {
		return params{}, fmt.Errorf("flatfile: param %s (the directory the files go to) is required", ParamPath)
	}
	switch d := p[ParamDialect]; d {
	case "", string(Postgres):
	case string(MySQL):
		out.dialect = MySQL
	default:
		return params{}, fmt.Errorf("flatfile: param %s=%q: expected postgres or mysql", ParamDialect, d)
	}
	switch f := p[ParamFsync]; f {
	case "", "on", "true":
	case "off", "false":
		out.fsync = false
	default:
		return params{}, fmt.Errorf("flatfile: param %s=%q: expected on or off", ParamFsync, f)
	}
	return out, nil
}
