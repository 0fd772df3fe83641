// Package sinks is where replicated changes are written.
//
// A run (package job) turns each batch of changed keys into, for every receiving
// database, a list of keys to replace and a stream of the winning rows in PostgreSQL's
// COPY text format, keys first. A sink must apply that idempotently: applying the same
// batch twice leaves the same result, because a run killed between a receiver's commit and
// the watermark update applies the batch again.
//
// PostgreSQL is the only sink today. Its apply lives in package job (job/delta.go,
// job/stream.go) because it shares the receiving transaction with capture-aware checks
// on sources: targets delete the keys and COPY the rows straight in; sources COPY into a
// stage table and upsert under a savepoint, so that application transactions waiting on
// those rows apply their change on top. The contract admits non-PostgreSQL targets
// (Bucardo writes SQL text files, MySQL/MariaDB, Redis, SQLite, MongoDB): such a sink only
// receives (it is never a source), takes the key list and the row stream, and reports
// rows written.
package sinks
