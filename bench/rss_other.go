//go:build !unix

package main

import "os"

// maxRSSKiB is not available here.
func maxRSSKiB(*os.ProcessState) int64 { return 0 }
