-- Symbolic links: a third inode type, 'l', whose target is kept as given (never resolved).
ALTER TABLE inodes DROP CONSTRAINT inodes_type_check;
ALTER TABLE inodes ADD CONSTRAINT inodes_type_check CHECK (type IN ('f', 'd', 'l'));
ALTER TABLE inodes ADD COLUMN target text;
