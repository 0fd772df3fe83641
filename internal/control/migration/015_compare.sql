-- ibex control schema, version 15: a sync may ask the scheduler to compare its dbs
-- (ibex compare) every so often: compare_every, a Go duration ('' for never).
ALTER TABLE ibex.sync ADD COLUMN compare_every text NOT NULL DEFAULT '';
