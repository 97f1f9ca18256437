-- Names are stored in Unicode NFC (pydfs.paths normalises every path it is given). A name stored
-- before in another form (NFD, as macOS spells "café") is renamed to its NFC form, or, where an
-- entry of its directory has that form already (the two spellings made two entries), to its NFC
-- form followed by " (INODE-ID)", so that every entry stays reachable. nfc() is Store's.
UPDATE inodes SET name = nfc(name) || ' (' || id || ')'
WHERE name != nfc(name) AND EXISTS (
    SELECT 1 FROM inodes o
    WHERE o.parent = inodes.parent AND o.id != inodes.id AND nfc(o.name) = nfc(inodes.name)
);
UPDATE inodes SET name = nfc(name) WHERE name != nfc(name);
