-- Upload leases live in the store, so that every name node sees them (and a block report is
-- judged by them rather than by one process's memory).
CREATE TABLE uploads (
    id          TEXT    PRIMARY KEY,
    user        TEXT    NOT NULL,
    path        TEXT,
    replication INTEGER NOT NULL,
    block_size  INTEGER NOT NULL,
    overwrite   INTEGER NOT NULL,
    started     REAL    NOT NULL,
    expires     REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_by_user ON uploads (user);
CREATE TABLE upload_blocks (
    block  TEXT PRIMARY KEY,
    upload TEXT NOT NULL,
    nodes  TEXT NOT NULL  -- the ids the grant named, comma-separated, in pipeline order
) WITHOUT ROWID;
CREATE INDEX upload_blocks_by_upload ON upload_blocks (upload);
-- How many files, directories and blocks there are, kept by triggers so that a metrics scrape
-- reads three rows rather than counting every inode (one writer: no contention on them).
CREATE TABLE census (
    kind TEXT    PRIMARY KEY,  -- 'f', 'd' (inode types) or 'b' (blocks)
    n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO census VALUES ('f', (SELECT count(*) FROM inodes WHERE type = 'f'));
INSERT INTO census VALUES ('d', (SELECT count(*) FROM inodes WHERE type = 'd'));
INSERT INTO census VALUES ('b', (SELECT count(*) FROM blocks));
CREATE TRIGGER census_inode_in AFTER INSERT ON inodes
BEGIN
    UPDATE census SET n = n + 1 WHERE kind = NEW.type;
END;
CREATE TRIGGER census_inode_out AFTER DELETE ON inodes
BEGIN
    UPDATE census SET n = n - 1 WHERE kind = OLD.type;
END;
CREATE TRIGGER census_block_in AFTER INSERT ON blocks
BEGIN
    UPDATE census SET n = n + 1 WHERE kind = 'b';
END;
CREATE TRIGGER census_block_out AFTER DELETE ON blocks
BEGIN
    UPDATE census SET n = n - 1 WHERE kind = 'b';
END;
