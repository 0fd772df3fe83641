//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on every Linux port).
const clockTick = 10 * time.Millisecond

// serverCPU is the CPU time (user + system) a PostgreSQL cluster has used: its postmaster's
// own, that of the children it has reaped (backends that ended: cutime, cstime), and that of
// the children alive now (checkpointer, walsender, backends). pidFile is the cluster's
// postmaster.pid. Read before and after a run, the difference is what the cluster spent on
// it, once the run's backends have ended and been reaped: a child that is exiting (or has
// exited and is not reaped yet) may show no CPU time while it is not in the postmaster's
// yet, so zombies says how many such children there are (read again until none).
func serverCPU(pidFile string) (cpu time.Duration, zombies int, err error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the postmaster's pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the postmaster's pid from %s: %w", pidFile, err)
	}
	f, _, err := procStat(pid)
	if err != nil {
		return 0, 0, err
	}
	ticks := f[11] + f[12] + f[13] + f[14] // utime, stime, cutime, cstime
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, 0, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil || child == pid {
			continue
		}
		cf, state, err := procStat(child)
		if err != nil || cf[1] != int64(pid) { // gone meanwhile, or not the postmaster's
			continue
		}
		if state == "Z" || state == "X" || cf[6]&pfExiting != 0 {
			zombies++
		}
		ticks += cf[11] + cf[12]
	}
	return time.Duration(ticks) * clockTick, zombies, nil
}

// pfExiting is the kernel's flag of a process that is exiting (PF_EXITING, in the flags of
// /proc/pid/stat).
const pfExiting = 0x4

// procStat reads the fields of /proc/pid/stat after the command name: the state, and the
// numbers f[1] the parent's pid, f[6] the kernel flags, f[11..14] utime, stime, cutime,
// cstime (fields 4, 9 and 14-17 of proc(5)).
func procStat(pid int) (f []int64, state string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 15 {
		return nil, "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	f = make([]int64, 15)
	for k := 1; k < 15; k++ {
		f[k], _ = strconv.ParseInt(fields[k], 10, 64)
	}
	return f, fields[0], nil
}
