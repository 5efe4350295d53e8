"""kickoff: an event-sourced task scheduler for heterogeneous compute clusters."""

__version__ = "0.1.0"
