-- ibex control schema, version 14: on_orphan=delete|keep per sync (a child row whose parent
-- another source deleted in the same run is deleted everywhere and logged), and the full
-- row of a conflict's losing version in the conflict log.
ALTER TABLE ibex.sync ADD COLUMN on_orphan text NOT NULL DEFAULT 'delete' CHECK (on_orphan IN ('delete', 'keep'));
ALTER TABLE ibex.conflict ADD COLUMN row_text text;
