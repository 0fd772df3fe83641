// Command ibex is the admin command line of ibex: install the control schema, describe
// dbs, tables, herds, dbgroups and syncs, kick syncs and see their status.
package main

import (
	"os"

	"github.com/ibexrepl/ibex/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
