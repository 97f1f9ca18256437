-- The metadata of pydfs on PostgreSQL: the same meaning as SQLite's schema after its migration
-- 0007, in PostgreSQL's types. Names and ids compare byte by byte (COLLATE "C"), as SQLite's do,
-- so that listings, pages and every ORDER BY agree between the two backends.

-- The namespace: a tree of inodes. The root's parent is NULL here (0 through the interface), so
-- that every other inode's parent is a foreign key: a directory cannot be removed while a
-- concurrent transaction creates an entry in it, nor an entry be made in a removed one.
CREATE SEQUENCE inode_ids START 2;  -- 1 is the root's
CREATE TABLE inodes (
    id          bigint  PRIMARY KEY,
    parent      bigint  REFERENCES inodes (id),
    name        text    COLLATE "C" NOT NULL,
    type        text    NOT NULL CHECK (type IN ('f', 'd')),
    size        bigint  NOT NULL DEFAULT 0,
    mtime       double precision NOT NULL,
    ctime       double precision NOT NULL,
    owner       text    NOT NULL,
    replication integer NOT NULL DEFAULT 0,
    block_size  bigint  NOT NULL DEFAULT 0,
    grp         text    NOT NULL DEFAULT 'root',
    mode        integer NOT NULL DEFAULT 493,
    sha256      text,   -- the whole content's SHA-256 its writer computed (hex), if recorded
    CONSTRAINT inodes_parent_name UNIQUE (parent, name)
);

-- A file's content is an ordered list of immutable blocks, which several files may share. The
-- foreign keys make a block unreleasable while a concurrent copy names it, and a file's blocks
-- unattachable once the file is gone.
CREATE TABLE blocks (
    id    text   COLLATE "C" PRIMARY KEY,
    size  bigint NOT NULL,
    crc   bigint NOT NULL,
    ctime double precision NOT NULL
);
CREATE TABLE file_blocks (
    inode bigint  NOT NULL REFERENCES inodes (id),
    idx   integer NOT NULL,
    block text    COLLATE "C" NOT NULL REFERENCES blocks (id),
    PRIMARY KEY (inode, idx)
);
CREATE INDEX file_blocks_by_block ON file_blocks (block);

-- Counted replicas (with when the name node counted each), and the trash: replicas their data
-- nodes are to delete.
CREATE TABLE replicas (
    block text COLLATE "C" NOT NULL,
    node  text COLLATE "C" NOT NULL,
    added double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (block, node)
);
CREATE INDEX replicas_by_node ON replicas (node);
CREATE TABLE trash (
    node  text COLLATE "C" NOT NULL,
    block text COLLATE "C" NOT NULL,
    PRIMARY KEY (node, block)
);

-- Every data node ever seen, and an operator's intent for it: 'normal', 'decommissioning',
-- 'decommissioned'.
CREATE TABLE datanodes (
    id          text COLLATE "C" PRIMARY KEY,
    url         text NOT NULL,
    admin_state text NOT NULL DEFAULT 'normal'
);

-- Users: a bearer token is kept only as its SHA-256; groups are those besides the user's own.
CREATE TABLE users (
    name       text    COLLATE "C" PRIMARY KEY,
    token_hash text    NOT NULL UNIQUE,
    admin      boolean NOT NULL DEFAULT false,
    groups     text[]  NOT NULL DEFAULT '{}',
    ctime      double precision NOT NULL
);

-- Upload leases (soft state: written with synchronous_commit off), and the blocks granted to
-- them with the nodes each grant named, in pipeline order.
CREATE TABLE uploads (
    id          text    COLLATE "C" PRIMARY KEY,
    "user"      text    NOT NULL,
    path        text,
    replication integer NOT NULL,
    block_size  bigint  NOT NULL,
    overwrite   boolean NOT NULL,
    started     double precision NOT NULL,
    expires     double precision NOT NULL
);
CREATE INDEX uploads_by_user ON uploads ("user");
CREATE TABLE upload_blocks (
    block  text   COLLATE "C" PRIMARY KEY,
    upload text   COLLATE "C" NOT NULL,
    nodes  text[] NOT NULL
);
CREATE INDEX upload_blocks_by_upload ON upload_blocks (upload);

-- The generation of the tree's shape, which every name node's directory cache compares: the sum
-- of a few stripes, each reshaping write adding one to one of them at random as it commits, so
-- that two reshaping writes seldom wait for each other's commit (no other write touches it).
CREATE TABLE generation (
    stripe integer PRIMARY KEY,
    n      bigint  NOT NULL DEFAULT 0
);
INSERT INTO generation (stripe) SELECT s FROM generate_series(0, 15) AS s;
