"""Event types and their JSON codec. Pure: no I/O here."""

from kickoff.events.model import EVENT_TYPES, Event

__all__ = ["EVENT_TYPES", "Event"]
