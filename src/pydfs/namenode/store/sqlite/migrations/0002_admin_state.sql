-- An operator's intent for a data node: 'normal', or 'decommissioning' while its blocks are
-- copied elsewhere, then 'decommissioned' (safe to remove).
ALTER TABLE datanodes ADD COLUMN admin_state TEXT NOT NULL DEFAULT 'normal';
