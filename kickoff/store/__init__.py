"""The log's one owner: the recorder interface (recorder.py) and its SQLite backend
(sqlite.py), the rows and their hash chain (chain.py), the schema and its migrations
(schema.py), opening a file (connection.py), compaction archives (archive.py) and group
commit (writer.py). Nothing here knows the projections."""
