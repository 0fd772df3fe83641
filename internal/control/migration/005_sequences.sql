-- ibex control schema, version 5: sequences (Bucardo's goats of reltype sequence). A
-- sequence belongs to herds as a table does; every run of a sync whose herd holds it brings
-- the sequence on each PostgreSQL db of the sync up to the highest value on any source. db is
-- where it was found when added. interleave records that 'ibex update sequence NAME
-- interleave=on' gave the sources of its syncs interleaved increments.
CREATE TABLE ibex.sequence (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schemaname  text NOT NULL,
    seqname     text NOT NULL,
    db          text REFERENCES ibex.db (name) ON UPDATE CASCADE ON DELETE SET NULL,
    interleave  boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schemaname, seqname)
);

CREATE TABLE ibex.herdseq (
    herd        text NOT NULL REFERENCES ibex.herd (name) ON UPDATE CASCADE ON DELETE CASCADE,
    sequence    bigint NOT NULL REFERENCES ibex.sequence (id) ON DELETE CASCADE,
    PRIMARY KEY (herd, sequence)
);
