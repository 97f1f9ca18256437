-- The lease on background work (see interface.Leader): one row. Times are Unix seconds.
CREATE TABLE leader (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    holder  TEXT    NOT NULL,
    url     TEXT    NOT NULL,
    epoch   INTEGER NOT NULL,
    expires REAL    NOT NULL,
    nudges  INTEGER NOT NULL
);
INSERT INTO leader VALUES (1, '', '', 0, 0, 0);
