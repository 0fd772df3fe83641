-- ibex control schema, version 3: a sync may ask that a run write each receiver in one
-- transaction whatever the size of the backlog (single_transaction), instead of committing
-- every batch_size changed keys.
ALTER TABLE ibex.sync ADD COLUMN single_transaction boolean NOT NULL DEFAULT false;
