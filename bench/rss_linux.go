//go:build linux

package main

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// watchRSS samples a running child's VmHWM (the peak resident set size of its own address
// space) from /proc every 5 ms; stop returns the last (largest) sample in KiB, or the
// rusage figure when no sample was taken (a process shorter than one interval).
//
// rusage's Maxrss alone is wrong for a child of a large parent on Linux: exec records the
// high-water RSS of the address space it replaces (the parent's, shared by the vfork that
// os/exec uses) in the child's maxrss, so a child started by a bench process that once held
// 100 MiB reports at least 100 MiB.
func watchRSS(pid int) (stop func(ps *os.ProcessState) int64) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	done := make(chan struct{})
	res := make(chan int64, 1)
	go func() {
		var hwm int64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(path); err == nil {
				if i := bytes.Index(b, []byte("VmHWM:")); i >= 0 {
					f := bytes.Fields(b[i+len("VmHWM:"):])
					if len(f) > 0 {
						if v, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil && v > hwm {
							hwm = v
						}
					}
				}
			}
			select {
			case <-done:
				res <- hwm
				return
			case <-t.C:
			}
		}
	}()
	return func(ps *os.ProcessState) int64 {
		close(done)
		if v := <-res; v > 0 {
			return v
		}
		if ps == nil {
			return 0
		}
		return maxRSSKiB(ps)
	}
}
