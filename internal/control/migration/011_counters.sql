-- ibex control schema, version 11: counter columns per table (counters=): each source's
-- change to them is applied everywhere as a delta, so concurrent increments add up.
ALTER TABLE ibex.relation ADD COLUMN counters text[] NOT NULL DEFAULT '{}';
