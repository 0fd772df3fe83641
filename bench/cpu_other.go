//go:build !linux

package main

import (
	"errors"
	"time"
)

// serverCPU needs Linux's /proc: elsewhere the capture section reports no CPU figures.
func serverCPU(string) (time.Duration, int, error) {
	return 0, 0, errors.New("the CPU time of a cluster is read from /proc (Linux only)")
}
