package capture

import (
	"slices"
	"testing"

	"github.com/ibexrepl/ibex/internal/catalog"
)

// BumpFormatForTest adds a format migration that changes nothing, until the test ends:
// change tables installed before it are then of an older format, and migrating them only
// records the new version. Tests calling it must not run in parallel with tests that
// install or check capture.
func BumpFormatForTest(t testing.TB) {
	old := migrations
	migrations = append(slices.Clip(migrations), Migration{
		Summary: "nothing (a test's version bump)",
		SQL:     func(string, *catalog.Table) []string { return nil },
	})
	t.Cleanup(func() { migrations = old })
}

// BumpFormatWithSQLForTest is BumpFormatForTest with a migration whose statements, on
// the change table ct (quoted), are sql's.
func BumpFormatWithSQLForTest(t testing.TB, sql func(ct string) []string) {
	old := migrations
	migrations = append(slices.Clip(migrations), Migration{
		Summary: "a test's version bump",
		SQL:     func(ct string, _ *catalog.Table) []string { return sql(ct) },
	})
	t.Cleanup(func() { migrations = old })
}
