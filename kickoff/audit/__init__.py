"""The log as a tool for users: a task's story, point-in-time replay, verify, compaction.

`history` and `points` are pure; `pointintime`, `verify` and `compact` read (and, for
compaction, write) a database file directly, for the offline commands.
"""
