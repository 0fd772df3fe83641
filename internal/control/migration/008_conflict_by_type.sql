-- ibex control schema, version 8: a conflict strategy per conflict type (insert_exists,
-- update_update, update_delete, delete_delete), overriding the sync's conflict_strategy
-- for that type: {"update_delete": "skip"}.
ALTER TABLE ibex.sync ADD COLUMN conflict_by_type jsonb NOT NULL DEFAULT '{}';
