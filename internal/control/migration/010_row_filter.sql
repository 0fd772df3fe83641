-- ibex control schema, version 10: a row filter per table (where=): an SQL condition on the
-- table's columns, evaluated on the sending db; only rows matching it move.
ALTER TABLE ibex.relation ADD COLUMN row_filter text NOT NULL DEFAULT '';
