-- ibex control schema, version 6: the tables each sync has taken in (synctable). A table
-- of a sync's herd that is not there was added to the herd since: the next run copies it
-- once to the sync's targets (as onetimecopy=1 does, for that table alone), then records
-- it here. Creating a sync records every table of its herd; so does this migration for the
-- syncs there are.
CREATE TABLE ibex.synctable (
    sync        text NOT NULL REFERENCES ibex.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
    relation    bigint NOT NULL REFERENCES ibex.relation (id) ON DELETE CASCADE,
    PRIMARY KEY (sync, relation)
);
INSERT INTO ibex.synctable (sync, relation)
SELECT s.name, h.relation FROM ibex.sync s JOIN ibex.herdmap h ON h.herd = s.herd;
