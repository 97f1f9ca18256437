-- When the name node counted each replica (its clock): a block report misses only replicas
-- stored after its listing began, so older ones it does not name are lost.
ALTER TABLE replicas ADD COLUMN added REAL NOT NULL DEFAULT 0;
