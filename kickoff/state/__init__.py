"""The in-memory scheduler state: a pure fold over the log, the matcher, and the rules."""
