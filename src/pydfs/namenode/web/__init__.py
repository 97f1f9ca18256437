"""The name node's web UI: pages mounted into its app, reading its state; no state of its own."""
