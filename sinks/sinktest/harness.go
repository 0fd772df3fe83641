// Package sinktest is the conformance suite every sinks.Sink passes, in the manner of
// River's riverdrivertest: a sink's own test implements Harness (make a table, store rows
// as the receiver's application would, open a sink, read a table back) and calls
// Exercise, which checks, each on a table of its own, the outcomes the run relies on, row
// for row and count for count.
package sinktest

import (
	"testing"

	"github.com/ibexrepl/ibex/sinks"
)

// Kind is a generic column type; a harness maps it to the receiver's type.
type Kind int

const (
	// Int is a 32-bit integer (PostgreSQL integer), printed in decimal.
	Int Kind = iota
	// BigInt is a 64-bit integer (PostgreSQL bigint), printed in decimal.
	BigInt
	// Text is a string of any length (PostgreSQL text).
	Text
	// Bytes is a byte string (PostgreSQL bytea), printed in COPY text as \\x and hex.
	Bytes
)

// Column is a column of a Spec.
type Column struct {
	Name string
	Kind Kind
}

// Spec is a table the suite needs.
type Spec struct {
	Schema, Name string
	// Columns lists every column, the Key key columns first.
	Columns []Column
	Key     int
}

// Harness is what a sink's test provides. Its methods fail t on error.
type Harness interface {
	// CreateTable creates the table spec describes (primary key: its key columns; its
	// schema too, when missing), and removes it when t ends. It returns the table as the
	// sink takes it: Key and Cols named as in spec, in its order.
	CreateTable(t *testing.T, spec Spec) *sinks.Table
	// Seed stores rows (COPY text, fields in Cols order) in tbl and commits, as the
	// receiver's own application would, outside any sink.
	Seed(t *testing.T, tbl *sinks.Table, rows []string)
	// NewSink returns a fresh sink on the receiver, ready for a unit, on a session of its
	// own (closed when t ends). A sink that needs the run's view of the receiver (a
	// snapshot) takes it here: the suite calls NewSink after it seeded the tables.
	NewSink(t *testing.T) sinks.Sink
	// Rows returns tbl's committed rows as COPY text lines (fields in Cols order),
	// sorted.
	Rows(t *testing.T, tbl *sinks.Table) []string
}
