// Command ibex is the admin command line of ibex: install the control schema, describe
// dbs, tables, herds, dbgroups and syncs, kick syncs and see their status.
//
// For profiling, IBEX_CPUPROFILE=FILE writes a CPU profile of the command to FILE (read it
// with go tool pprof), and IBEX_MEMPROFILE=FILE a profile of its allocations (go tool pprof
// -sample_index=alloc_space) at the end.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/ibexrepl/ibex/internal/cli"
)

func main() {
	if path := os.Getenv("IBEX_MEMPROFILE"); path != "" {
		runtime.MemProfileRate = 4096
		code := cli.Main(os.Args[1:], os.Stdout, os.Stderr)
		if err := writeMemProfile(path); err != nil {
			fmt.Fprintf(os.Stderr, "ibex: IBEX_MEMPROFILE: %v\n", err)
			os.Exit(2)
		}
		os.Exit(code)
	}
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

// writeMemProfile writes the allocations made so far to path.
func writeMemProfile(path string) error {
	runtime.GC() // the profile is as of the last collection
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
