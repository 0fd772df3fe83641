-- ibex control schema, version 12: on_error=stop|skip per sync, and the exception log of
-- rows a receiver refused under on_error=skip (parked: left as they were there).
ALTER TABLE ibex.sync ADD COLUMN on_error text NOT NULL DEFAULT 'stop' CHECK (on_error IN ('stop', 'skip'));
CREATE TABLE ibex.exception (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run       bigint NOT NULL REFERENCES ibex.run (id) ON DELETE CASCADE,
    sync      text NOT NULL,
    relation  text NOT NULL,
    db        text NOT NULL,
    key       text NOT NULL,
    row_text  text,
    error     text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX exception_sync_idx ON ibex.exception (sync, id DESC);
