-- ibex control schema, version 19: the runs still running, by sync. Each run starts by
-- closing the runs of its sync left running by a process that died (StartRun); without
-- this index that read the sync's whole history (72-81 ms with a million runs recorded,
-- about eleven hours of autokick at 25 runs a second).
CREATE INDEX run_running_idx ON ibex.run (sync) WHERE state = 'running';
