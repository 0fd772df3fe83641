package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartProfile: IBEX_CPUPROFILE's file holds a CPU profile once the command is done,
// and a path that cannot be created is an error.
func TestStartProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	stop, err := startProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b { // pprof profiles are gzipped
		t.Errorf("the profile is not a gzipped pprof profile (%d bytes)", len(b))
	}
	if _, err := startProfile(filepath.Join(t.TempDir(), "missing", "cpu.prof")); err == nil {
		t.Error("startProfile in a missing directory did not fail")
	}
}
