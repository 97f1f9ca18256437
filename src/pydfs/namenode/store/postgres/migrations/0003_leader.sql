-- The lease on background work (see interface.Leader): one row. Times are Unix seconds by the
-- server's clock, so that the name nodes' clocks need not agree.
CREATE TABLE leader (
    id      integer PRIMARY KEY CHECK (id = 1),
    holder  text             NOT NULL,
    url     text             NOT NULL,
    epoch   bigint           NOT NULL,
    expires double precision NOT NULL,
    nudges  bigint           NOT NULL
);
INSERT INTO leader VALUES (1, '', '', 0, 0, 0);
