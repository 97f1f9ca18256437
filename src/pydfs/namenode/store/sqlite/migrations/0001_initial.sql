-- The namespace: a tree of inodes; a file's content is an ordered list of immutable blocks.
-- Blocks may be shared by several files (file_copy shares them instead of copying bytes); a
-- block lives while any file_blocks row names it.
CREATE TABLE inodes (
    id          INTEGER PRIMARY KEY,
    parent      INTEGER NOT NULL,              -- 0 for the root
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL CHECK (type IN ('f', 'd')),
    size        INTEGER NOT NULL DEFAULT 0,
    mtime       REAL    NOT NULL,
    ctime       REAL    NOT NULL,
    owner       TEXT    NOT NULL,
    replication INTEGER NOT NULL DEFAULT 0,
    block_size  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (parent, name)
);
CREATE TABLE blocks (
    id    TEXT    PRIMARY KEY,
    size  INTEGER NOT NULL,
    crc   INTEGER NOT NULL,
    ctime REAL    NOT NULL
) WITHOUT ROWID;
CREATE TABLE file_blocks (
    inode INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    block TEXT    NOT NULL,
    PRIMARY KEY (inode, idx)
) WITHOUT ROWID;
CREATE INDEX file_blocks_by_block ON file_blocks (block);
-- Where each block's replicas are; filled by upload commits and block reports.
CREATE TABLE replicas (
    block TEXT NOT NULL,
    node  TEXT NOT NULL,
    PRIMARY KEY (block, node)
) WITHOUT ROWID;
CREATE INDEX replicas_by_node ON replicas (node);
-- Replicas that data nodes must delete; handed out with heartbeat replies.
CREATE TABLE trash (
    node  TEXT NOT NULL,
    block TEXT NOT NULL,
    PRIMARY KEY (node, block)
) WITHOUT ROWID;
-- Every data node ever seen, so that locations keep an address across name node restarts.
CREATE TABLE datanodes (
    id  TEXT PRIMARY KEY,
    url TEXT NOT NULL
) WITHOUT ROWID;
