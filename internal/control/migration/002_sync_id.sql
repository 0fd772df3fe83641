-- ibex control schema, version 2: every sync has an id of its own, never reused, which keys
-- the advisory lock a run of the sync holds (a hash of the name did, and two names can hash
-- alike). Existing syncs are numbered when the column is added.
ALTER TABLE ibex.sync ADD COLUMN id int GENERATED ALWAYS AS IDENTITY UNIQUE;
