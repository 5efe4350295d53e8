"""kickoff: an event-sourced task scheduler for heterogeneous compute clusters.

Only the version lives here: every part imports this package first, so it stays empty. The
README's "How it works" says where each part lives.
"""

__version__ = "0.1.0"
