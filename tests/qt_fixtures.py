"""Qt test fixtures (owned by the GUI work)."""
