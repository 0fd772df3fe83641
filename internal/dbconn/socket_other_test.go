//go:build !linux

package dbconn_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

type sockState struct {
	keepalive, idle, interval, count, userTimeout int
}

func socketState(*testing.T, *pgx.Conn) sockState { return sockState{} }

func systemSockState(*testing.T) sockState { return sockState{} }
