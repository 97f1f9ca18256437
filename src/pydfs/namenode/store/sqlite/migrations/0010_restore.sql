-- Where this database came from when it is a copy: when `pydfs admin backup` took it (written
-- into the copy only), and when `pydfs namenode restore` installed it (a copy carries the time
-- it was taken, so that one put in place by hand counts as restored too). While "restored" is
-- set, the name node deletes no block it does not know: data nodes hold blocks written after
-- the backup, the only copies of those files' data, until an admin lets them go.
CREATE TABLE provenance (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    taken    REAL,  -- NULL: a copy from before this table (its time unknown)
    restored REAL
);
-- Blocks data nodes hold that no file names, kept while restored; size NULL until the node
-- verified the block on the name node's order.
CREATE TABLE orphans (
    node  TEXT    NOT NULL,
    block TEXT    NOT NULL,
    size  INTEGER,
    PRIMARY KEY (node, block)
) WITHOUT ROWID;
