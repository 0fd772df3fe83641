-- ibex control schema, version 13: conflict_detect=rows|columns per table: with columns,
-- capture records which columns an update changed, and sources that changed different
-- columns of a row both keep their change.
ALTER TABLE ibex.relation ADD COLUMN conflict_detect text NOT NULL DEFAULT 'rows' CHECK (conflict_detect IN ('rows', 'columns'));
