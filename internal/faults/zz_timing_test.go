package faults

import (
	"testing"
	"time"

	"github.com/ibexrepl/ibex/internal/pgtest"
)

func TestZZClusterTiming(t *testing.T) {
	t0 := time.Now()
	c := pgtest.StartCluster(t, pgtest.ClusterOptions{})
	t.Logf("start %s", time.Since(t0))
	t0 = time.Now()
	c.CreateDB("x")
	t.Logf("createdb %s", time.Since(t0))
	t0 = time.Now()
	c.Kill()
	t.Logf("kill %s", time.Since(t0))
	t0 = time.Now()
	c.Start()
	t.Logf("restart %s", time.Since(t0))
	t0 = time.Now()
	c.Stop()
	t.Logf("stop %s", time.Since(t0))
	t0 = time.Now()
	e := newEnv(t, pgtest.ClusterOptions{Password: "x"})
	t.Logf("newEnv pw %s", time.Since(t0))
	_ = e
}
