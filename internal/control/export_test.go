package control

// StartRunSQL is StartRun's statement, for tests that look at its plan.
const StartRunSQL = startRunSQL
