-- Users and POSIX permissions. A user's bearer token is kept only as its SHA-256; "groups" is a
-- comma-separated list of the groups the user belongs to besides its own (named like the user).
CREATE TABLE users (
    name       TEXT    PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    admin      INTEGER NOT NULL DEFAULT 0,
    groups     TEXT    NOT NULL DEFAULT '',
    ctime      REAL    NOT NULL
) WITHOUT ROWID;
-- Every inode gets a group and mode bits; what existed before is 0755 / 0644, group "root".
ALTER TABLE inodes ADD COLUMN grp TEXT NOT NULL DEFAULT 'root';
ALTER TABLE inodes ADD COLUMN mode INTEGER NOT NULL DEFAULT 493;
UPDATE inodes SET mode = 420 WHERE type = 'f';
