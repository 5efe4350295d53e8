"""The log as a tool for users: a task's story, point-in-time replay, verify, compaction.

`history` and `timespec` are pure; `replay`, `verify` and `compact` (the policy; moving
rows is store/archive.py's) read a database through store/, for the offline commands.

None of it runs in the server; the log changes only by compaction, through store/archive.py.
"""
