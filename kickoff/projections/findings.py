"""What start-up's check of the checkpoint against the log reports (a Finding), and who is
to blame for it: the log, when a row it derives from does not verify, else the projection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kickoff.errors import DatabaseRefused
from kickoff.events import model as ev
from kickoff.store.chain import Row
from kickoff.store.recorder import Recorder


@dataclass(frozen=True, slots=True)
class Finding:
    """A disagreement between the checkpoint and the log, and who is to blame."""

    message: str
    log_damaged: bool  # the log's own rows do not verify (else: the projection is wrong)


def blame(recorder: Recorder, rows: list[Row], what: str) -> Finding:
    """The log is at fault if one of the rows this row derives from does not verify."""
    bad = next((r for r in rows if not recorder.row_verifies(r)), None)
    if bad is not None:
        return Finding(
            f"{what}; the log's seq {bad.seq} ({bad.type}) does not verify: its hash does "
            "not match its contents",
            log_damaged=True,
        )
    return Finding(what, log_damaged=False)


def decoded(rows: list[Row]) -> Iterator[tuple[Row, ev.Event | None]]:
    """Each row with its event (None: it does not decode)."""
    for row in rows:
        try:
            yield row, row.decode().event
        except DatabaseRefused:
            yield row, None
