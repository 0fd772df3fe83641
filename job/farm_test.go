package job_test

import "testing"

// TestFarm runs the tests that need only tables of their own, in parallel, on one shared
// set of databases (creating and dropping databases is what costs most in these tests).
func TestFarm(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	for _, ft := range []struct {
		name string
		fn   func(*testing.T, *farm)
	}{
		{"ConflictLatest", conflictStrategyTest("latest")},
		{"ConflictList", conflictStrategyTest("list")},
		{"ConflictSource", conflictStrategyTest("source")},
		{"ConflictSkip", conflictStrategyTest("skip")},
		{"ConflictAbort", testConflictAbort},
		{"ConflictOneKeyAbort", testConflictOneKeyAbort},
		{"InsertsKeyChangesDeletes", testInsertsKeyChangesDeletes},
		{"NoEcho", testNoEcho},
		{"LeastPrivilege", testLeastPrivilege},
		{"SchemaDrift", testSchemaDrift},
		{"Batching", testBatching},
		{"KeyTypesAndHostileNames", testKeyTypesAndHostileNames},
		{"KeyRewrittenToEqualValue", testKeyRewrittenToEqualValue},
		{"KeyColumnsNamedLikeChangeColumns", testKeyColumnsNamedLikeChangeColumns},
		{"IdentityAlwaysKey", testIdentityAlwaysKey},
		{"UniqueSwap", testUniqueSwap},
		{"TriggersAndForeignKeys", testTriggersAndForeignKeys},
		{"Onetimecopy1", testOnetimecopy1},
		{"Onetimecopy2", testOnetimecopy2},
		{"Fullcopy", testFullcopy},
		{"CancelledRuns", testCancelledRuns},
		{"KilledRuns", testKilledRuns},
	} {
		t.Run(ft.name, func(t *testing.T) {
			t.Parallel()
			ft.fn(t, f)
		})
	}
}
