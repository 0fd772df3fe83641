package job

import "github.com/ibexrepl/ibex/internal/conflict"

// SetDecide makes runs with o decide conflicts with f instead of the sync's strategy: a
// test can ask for a decision no strategy makes yet (a row built from several versions).
func SetDecide(o *Options, f func([]conflict.Change) conflict.Decision) { o.decide = f }
