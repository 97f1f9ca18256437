-- Requests applied recently, by user and request id (the client's, the same in every attempt of
-- one request), so that a retried request is answered as before rather than applied twice.
-- A row is written in the transaction of the change it records; status and body (the answer)
-- just after it. Kept a few minutes (namenode.applied.KEEP).
CREATE TABLE applied (
    usr     TEXT NOT NULL,
    id      TEXT NOT NULL,
    attempt TEXT NOT NULL,
    at      REAL NOT NULL,
    status  INTEGER,
    body    BLOB,
    PRIMARY KEY (usr, id)
) WITHOUT ROWID;
CREATE INDEX applied_at ON applied (at);
