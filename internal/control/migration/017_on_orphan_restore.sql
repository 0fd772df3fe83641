-- ibex control schema, version 17: on_orphan=restore (a parent row that another source
-- deleted while rows referencing it arrived is brought back everywhere).
ALTER TABLE ibex.sync DROP CONSTRAINT sync_on_orphan_check;
ALTER TABLE ibex.sync ADD CONSTRAINT sync_on_orphan_check CHECK (on_orphan IN ('delete', 'keep', 'restore'));
