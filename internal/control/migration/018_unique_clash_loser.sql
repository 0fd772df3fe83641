-- ibex control schema, version 18: unique_clash_loser=delete|park per sync (the losing row
-- of a unique clash is deleted everywhere, or deleted everywhere and parked in the
-- exception log with its row).
ALTER TABLE ibex.sync ADD COLUMN unique_clash_loser text NOT NULL DEFAULT 'delete' CHECK (unique_clash_loser IN ('delete', 'park'));
