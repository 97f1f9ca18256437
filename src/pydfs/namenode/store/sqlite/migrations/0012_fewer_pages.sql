-- The census triggers wrote a page of the census table in nearly every commit. The counts are
-- kept by TEMP triggers in a TEMP table of the name node's connection instead (which no commit
-- writes to the log), and stored here as it closes. 'open' is 1 while a name node has the store
-- open: a store it did not close (a crash, a backup taken meanwhile) is counted again at open.
DROP TRIGGER census_inode_in;
DROP TRIGGER census_inode_out;
DROP TRIGGER census_block_in;
DROP TRIGGER census_block_out;
INSERT INTO census VALUES ('open', 1);
-- An upload's granted blocks are listed in its own row too (comma-separated, in grant order),
-- so that no index of upload_blocks by upload is written with every lease and every commit.
ALTER TABLE uploads ADD COLUMN blocks TEXT NOT NULL DEFAULT '';
UPDATE uploads SET blocks = coalesce(
    (SELECT group_concat(block, ',') FROM upload_blocks WHERE upload = uploads.id), ''
);
DROP INDEX upload_blocks_by_upload;
