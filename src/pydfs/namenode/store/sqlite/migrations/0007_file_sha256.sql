-- The SHA-256 of a file's whole content, as its writer computed it while streaming the upload
-- (hex); NULL for files written before, or whose writer sent none. A copy keeps its source's.
ALTER TABLE inodes ADD COLUMN sha256 TEXT;
