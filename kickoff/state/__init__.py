"""The in-memory scheduler state: a pure fold over the log, the matcher, and the rules.

Pure: no clock and no I/O anywhere in this package (a test checks its imports).
"""
