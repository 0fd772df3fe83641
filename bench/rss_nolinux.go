//go:build !linux

package main

import "os"

// watchRSS: outside Linux, the rusage figure of the finished child.
func watchRSS(int) (stop func(ps *os.ProcessState) int64) {
	return func(ps *os.ProcessState) int64 {
		if ps == nil {
			return 0
		}
		return maxRSSKiB(ps)
	}
}
