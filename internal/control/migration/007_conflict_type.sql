-- ibex control schema, version 7: the type of each conflict (insert_exists, update_update,
-- update_delete, delete_delete), named as Spock and pgactive name them. Conflicts logged
-- before have none ('').
ALTER TABLE ibex.conflict ADD COLUMN type text NOT NULL DEFAULT '';
