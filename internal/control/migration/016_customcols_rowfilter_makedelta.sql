-- ibex control schema, version 16: customcols (Bucardo's verb): a receiver gets a table's
-- key and the columns of a select list evaluated on the sending db's row; scoped row
-- filters: a condition for one db, one sync, both, or every receiver (NULL: any), on top
-- of the table's own where=; makedelta per db and per table: rows ibex applies there are
-- captured for the other syncs that db is a source of (cascades).
CREATE TABLE ibex.customcols (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relation    bigint NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
    clause      text NOT NULL,
    db          text REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
    sync        text REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (relation, db, sync)
);
CREATE TABLE ibex.rowfilter (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relation    bigint NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
    condition   text NOT NULL,
    db          text REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
    sync        text REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (relation, db, sync)
);
ALTER TABLE ibex.db ADD COLUMN makedelta boolean NOT NULL DEFAULT false;
ALTER TABLE ibex.relation ADD COLUMN makedelta boolean NOT NULL DEFAULT false;
