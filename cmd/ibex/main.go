// Command ibex is the admin command line of ibex: install the control schema, describe
// dbs, tables, herds, dbgroups and syncs, kick syncs and see their status.
//
// For profiling, IBEX_CPUPROFILE=FILE writes a CPU profile of the command to FILE (read it
// with go tool pprof).
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/ibexrepl/ibex/internal/cli"
)

func main() {
	if path := os.Getenv("IBEX_CPUPROFILE"); path != "" {
		stop, err := startProfile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ibex: IBEX_CPUPROFILE: %v\n", err)
			os.Exit(2)
		}
		code := cli.Main(os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
