"""Storage: the SQLite connection and schema, the append-only log, the group-commit writer."""
