// Package logging builds ibex's slog loggers with Bucardo's levels: terse, normal,
// verbose and debug.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Levels, from least to most said.
const (
	LevelTerse   = slog.LevelWarn
	LevelNormal  = slog.LevelInfo
	LevelVerbose = slog.LevelDebug
	LevelDebug   = slog.LevelDebug - 4
)

// ParseLevel maps a level name to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "terse", "warn", "error":
		return LevelTerse, nil
	case "", "normal", "info":
		return LevelNormal, nil
	case "verbose":
		return LevelVerbose, nil
	case "debug", "debug2":
		return LevelDebug, nil
	}
	return 0, fmt.Errorf("unknown log level %q: use terse, normal, verbose or debug", s)
}

// New returns a logger writing text or json to w at the named level.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q: use text or json", format)
}
