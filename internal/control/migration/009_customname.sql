-- ibex control schema, version 9: customname (Bucardo's verb): a target writes a table's
-- rows into another table, for one db, one sync, both, or every target (NULL: any).
CREATE TABLE ibex.customname (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relation    bigint NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
    schemaname  text NOT NULL,
    tablename   text NOT NULL,
    db          text REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE CASCADE,
    sync        text REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (relation, db, sync)
);
