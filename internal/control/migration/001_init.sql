-- ibex control schema, version 1.
CREATE TABLE ibex.db (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.-]*$' AND length(name) <= 63),
    conn        jsonb NOT NULL DEFAULT '{}',   -- libpq keywords; never a password
    pass        text CHECK (pass IS NULL OR pass ~ '^(env|file):.+'),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.relation (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schemaname  text NOT NULL,
    tablename   text NOT NULL,
    db          text REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE SET NULL,
    keycols     text[] NOT NULL DEFAULT '{}',  -- empty: no key (fullcopy only)
    keykind     text NOT NULL CHECK (keykind IN ('primary key', 'unique index', 'none')),
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schemaname, tablename)
);

CREATE TABLE ibex.herd (
    name        text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.herdmap (
    herd        text NOT NULL REFERENCES ibex.herd (name) ON UPDATE CASCADE ON DELETE CASCADE,
    relation    bigint NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
    priority    int NOT NULL DEFAULT 0,
    PRIMARY KEY (herd, relation)
);

CREATE TABLE ibex.dbgroup (
    name        text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex.dbmap (
    dbgroup     text NOT NULL REFERENCES ibex.dbgroup (name) ON UPDATE CASCADE ON DELETE CASCADE,
    db          text NOT NULL REFERENCES ibex.db (name) ON UPDATE CASCADE,
    role        text NOT NULL CHECK (role IN ('source', 'target', 'fullcopy')),
    position    int NOT NULL,
    PRIMARY KEY (dbgroup, db)
);

CREATE TABLE ibex.sync (
    name              text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_-]*$' AND length(name) <= 40),
    herd              text NOT NULL REFERENCES ibex.herd (name) ON UPDATE CASCADE,
    dbgroup           text NOT NULL REFERENCES ibex.dbgroup (name) ON UPDATE CASCADE,
    conflict_strategy text NOT NULL DEFAULT 'latest',
    autokick          boolean NOT NULL DEFAULT false,
    onetimecopy       int NOT NULL DEFAULT 0 CHECK (onetimecopy IN (0, 1, 2)),
    schedule          text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    batch_size        int NOT NULL DEFAULT 0 CHECK (batch_size >= 0),
    created           timestamptz NOT NULL DEFAULT now()
);

-- One row per run of a sync: good, bad, empty, or still running.
CREATE TABLE ibex.run (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync        text NOT NULL,
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'good', 'bad', 'empty')),
    started     timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended       timestamptz,
    inserts     bigint NOT NULL DEFAULT 0,
    deletes     bigint NOT NULL DEFAULT 0,
    conflicts   bigint NOT NULL DEFAULT 0,
    details     jsonb NOT NULL DEFAULT '{}',
    error       text NOT NULL DEFAULT '',
    host        text NOT NULL DEFAULT '',
    pid         int NOT NULL DEFAULT 0,
    backend_pid int NOT NULL DEFAULT pg_backend_pid()
);
CREATE INDEX run_sync_idx ON ibex.run (sync, id DESC);

-- The conflict log: one row per key changed on more than one source in a run.
CREATE TABLE ibex.conflict (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run         bigint NOT NULL REFERENCES ibex.run (id) ON DELETE CASCADE,
    sync        text NOT NULL,
    relation    text NOT NULL,
    key         text NOT NULL,
    dbs         text[] NOT NULL,
    winner      text,
    strategy    text NOT NULL,
    resolution  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX conflict_sync_idx ON ibex.conflict (sync, id DESC);

-- What each receiving db has applied of each source's captured changes: the source-side
-- snapshot (pg_snapshot text) whose visible changes are all applied.
CREATE TABLE ibex.watermark (
    sync        text NOT NULL,
    source      text NOT NULL,
    receiver    text NOT NULL,
    snap        text NOT NULL,
    updated     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (sync, source, receiver)
);
