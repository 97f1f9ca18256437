-- Symbolic links: a third inode type, 'l', whose target is kept as given (never resolved).
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt (same ids, rows and unique
-- names) and the census triggers, dropped with the old table, are made again.
CREATE TABLE inodes_new (
    id          INTEGER PRIMARY KEY,
    parent      INTEGER NOT NULL,              -- 0 for the root
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL CHECK (type IN ('f', 'd', 'l')),
    size        INTEGER NOT NULL DEFAULT 0,
    mtime       REAL    NOT NULL,
    ctime       REAL    NOT NULL,
    owner       TEXT    NOT NULL,
    replication INTEGER NOT NULL DEFAULT 0,
    block_size  INTEGER NOT NULL DEFAULT 0,
    grp         TEXT    NOT NULL DEFAULT 'root',
    mode        INTEGER NOT NULL DEFAULT 493,
    sha256      TEXT,
    target      TEXT,                          -- a link's target; NULL for files and directories
    UNIQUE (parent, name)
);
INSERT INTO inodes_new (id, parent, name, type, size, mtime, ctime, owner, replication,
                        block_size, grp, mode, sha256)
SELECT id, parent, name, type, size, mtime, ctime, owner, replication, block_size, grp, mode,
       sha256
FROM inodes;
DROP TABLE inodes;
ALTER TABLE inodes_new RENAME TO inodes;
INSERT INTO census VALUES ('l', 0);
CREATE TRIGGER census_inode_in AFTER INSERT ON inodes
BEGIN
    UPDATE census SET n = n + 1 WHERE kind = NEW.type;
END;
CREATE TRIGGER census_inode_out AFTER DELETE ON inodes
BEGIN
    UPDATE census SET n = n - 1 WHERE kind = OLD.type;
END;
