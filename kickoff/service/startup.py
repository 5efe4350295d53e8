"""Start-up: open the database and load the state, from the projections' checkpoint plus
the log's tail, or by folding the whole log. Runs before the server takes requests; no
recording and no answering here (recording.py, claims.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kickoff.database import Database, Fence, catch_up
from kickoff.dblocation import Location
from kickoff.state.fold import State


@dataclass(frozen=True, slots=True, kw_only=True)
class StartUp:
    """How the server got its state: from the projections' checkpoint at `checkpoint_seq`
    plus the `folded` events after it (a full replay: checkpoint 0, every event folded)."""

    checkpoint_seq: int
    folded: int
    seconds: float
    warm: bool = False  # a standby's state, followed warm up to checkpoint_seq


def load(
    db_path: Location,
    *,
    full_replay: bool,
    fence: Fence | None = None,
    warm: State | None = None,
) -> tuple[Database, State, StartUp]:
    """Open the database and build its state (blocking: run it in a thread); `warm`: a
    state kept current by following the log (a standby's), only its tail left to fold.

    Raises:
        DatabaseRefused: the database cannot be used.
    """
    started = time.perf_counter()
    db = Database(db_path, fence=fence)
    try:
        if warm is not None:
            checkpoint = warm.last_seq
            state, folded = warm, catch_up(db.recorder, warm)
        elif full_replay:
            state = db.replay()
            checkpoint, folded = 0, state.last_seq
        else:
            state, folded = db.open_checked()
            checkpoint = state.last_seq - folded
    except BaseException:
        db.close()
        raise
    seconds = time.perf_counter() - started
    return (
        db,
        state,
        StartUp(checkpoint_seq=checkpoint, folded=folded, seconds=seconds, warm=warm is not None),
    )
