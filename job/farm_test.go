package job_test

import "testing"

// TestFarm runs the job tests in parallel on one shared set of databases, each test with
// a schema, herd, dbgroup and sync of its own (creating and dropping databases would
// otherwise cost more than the tests themselves). Run one with -run 'TestFarm/NAME$'.
func TestFarm(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	for _, ft := range []struct {
		name string
		fn   func(*testing.T, *farm)
	}{
		{"SeedDemoSmall", testSeedDemoSmall},
		{"ConvergenceUnderConcurrentWrites", testConvergenceUnderConcurrentWrites},
		{"ConflictLatest", conflictStrategyTest("latest")},
		{"ConflictList", conflictStrategyTest("list")},
		{"ConflictSource", conflictStrategyTest("source")},
		{"ConflictSkip", conflictStrategyTest("skip")},
		{"ConflictAbort", testConflictAbort},
		{"ConflictOneKeyAbort", testConflictOneKeyAbort},
		{"ConflictByType", testConflictByType},
		{"ConflictLogUnitRetried", testConflictLogUnitRetried},
		{"InsertsKeyChangesDeletes", testInsertsKeyChangesDeletes},
		{"NoEcho", testNoEcho},
		{"InFlightTransactions", testInFlightTransactions},
		{"LateChangeOnReceiver", testLateChangeOnReceiver},
		{"AppWaitsOnAppliedRow", testAppWaitsOnAppliedRow},
		{"LatestTie", testLatestTie},
		{"InactiveReceiver", testInactiveReceiver},
		{"LeastPrivilege", testLeastPrivilege},
		{"AddSyncAllOrNothing", testAddSyncAllOrNothing},
		{"SchemaDrift", testSchemaDrift},
		{"Batching", testBatching},
		{"BatchingSkewAndTextKey", testBatchingSkewAndTextKey},
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
		{"FullcopyPartitioned", testFullcopyPartitioned},
		{"OnetimecopyPartitioned", testOnetimecopyPartitioned},
		{"CopyRowCountMismatch", testCopyRowCountMismatch},
		{"DeltaRowCountMismatch", testDeltaRowCountMismatch},
		{"OnetimecopyStaysOn", testOnetimecopyStaysOn},
		{"FailedRunRollsBackReceiver", testFailedRunRollsBackReceiver},
		{"ReceiverRetries", testReceiverRetries},
		{"TransactionsPerRun", testTransactionsPerRun},
		{"BuiltRow", testBuiltRow},
		{"TruncateOrder", testTruncateOrder},
		{"TruncateCascade", testTruncateCascade},
		{"TruncateRacesPgbench", testTruncateRacesPgbench},
		{"DDLUnderPgbench", testDDLUnderPgbench},
		{"DDLFailsOnOneDB", testDDLFailsOnOneDB},
		{"ColumnAddedByHand", testColumnAddedByHand},
		{"TableAddedToRunningSync", testTableAddedToRunningSync},
		{"CustomName", testCustomName},
		{"RowFilter", testRowFilter},
		{"CustomCols", testCustomCols},
		{"ScopedRowFilter", testScopedRowFilter},
		{"FullcopyCustomColsFilter", testFullcopyCustomColsFilter},
		{"MakeDeltaCascade", testMakeDeltaCascade},
		{"MakeDeltaLoop", testMakeDeltaLoop},
		{"MakeDeltaCycle", testMakeDeltaCycle},
		{"Counters", testCounters},
		{"CountersBadInput", testCountersBadInput},
		{"CountersLateKey", testCountersLateKey},
		{"CountersRacePgbench", testCountersRacePgbench},
		{"CountersReplay", testCountersReplay},
		{"CountersReceiverLeaves", testCountersReceiverLeaves},
		{"ConflictFunctionReplay", testConflictFunctionReplay},
		{"ConflictFunction", testConflictFunction},
		{"OnErrorSkip", testOnErrorSkip},
		{"OnErrorSkipTargets", testOnErrorSkipTargets},
		{"ColumnMerge", testColumnMerge},
		{"Orphans", testOrphans},
		{"OrphansRestore", testOrphansRestore},
		{"UniqueClash", testUniqueClash},
		{"UniqueClashBatches", testUniqueClashBatches},
		{"CompareFindsDivergence", testCompareFindsDivergence},
		{"CompareUnderPgbench", testCompareUnderPgbench},
		{"Repair", testRepair},
		{"CompareDBDown", testCompareDBDown},
		{"WarmSessions", testWarmSessions},
	} {
		t.Run(ft.name, func(t *testing.T) {
			t.Parallel()
			ft.fn(t, f)
		})
	}
}
