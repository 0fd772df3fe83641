package postgres_test

import (
	"testing"

	"github.com/ibexrepl/ibex/sinks/sinktest"
)

func TestTargetConformance(t *testing.T) { sinktest.Exercise(t, newHarness(t, false)) }

func TestSourceConformance(t *testing.T) { sinktest.Exercise(t, newHarness(t, true)) }
