-- The census triggers wrote a page of the census table in nearly every commit. The counts are
-- kept by TEMP triggers in a TEMP table of the name node's connection instead (which no commit
-- writes to the log), and stored here as it closes. 'open' is 1 while a name node has the store
-- open: a store it did not close (a crash, a backup taken meanwhile) is counted again at open.
DROP TRIGGER census_inode_in;
DROP TRIGGER census_inode_out;
DROP TRIGGER census_block_in;
DROP TRIGGER census_block_out;
INSERT INTO census VALUES ('open', 1);
