"""Reads: the server's read side. Projection and log queries run on a read-only
connection of their own; lookups that the in-memory state answers (groups, dependencies,
workers by name) are answered from it. Nothing here writes (recording.py does).
"""

from __future__ import annotations

from typing import Any

from kickoff.database import Reader, open_reader
from kickoff.dblocation import Location
from kickoff.errors import NotFound
from kickoff.projections import queries
from kickoff.service.recording import Recording
from kickoff.state import decide
from kickoff.store.recorder import Recorder


class Reads:
    """Queries over one server's database and state."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self._reader: Reader | None = None
        self.standby_recorder: Recorder | None = None  # a standby's (it records nothing)

    async def open(self, db_path: Location) -> None:
        """Open the read connection (once: a standby opened it already)."""
        if self._reader is None:
            self._reader = await open_reader(db_path)

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()

    @property
    def recorder(self) -> Recorder:
        """The log's recorder: its queries run on `query`."""
        if self.standby_recorder is not None:
            return self.standby_recorder
        return self.recording.db.recorder

    async def query(self, query: queries.Query) -> Any:
        assert self._reader is not None
        rows = await self._reader.execute_fetchall(query.sql, query.params)
        return query.shape(list(rows))

    async def get_task(self, task_id: int) -> dict[str, Any]:
        """Raises: NotFound: no such task."""
        task = await self.query(queries.get_task(task_id))
        if task is None:
            raise NotFound(f"no task {task_id}")
        return dict(task)

    def find_group(self, name: str) -> int:
        """A group's id from its name (or `g<id>`).

        Raises:
            NotFound: no such group.
        """
        return decide.find_group(self.recording.state, name)

    def waiting_for(self, task_id: int) -> list[int]:
        """The dependencies a waiting task still waits for."""
        return self.recording.state.waiting_for(task_id)

    def resolve_worker(self, key: str) -> str:
        """A live worker id from an id or a name.

        Raises:
            NotFound: no live worker with that id or name.
        """
        state = self.recording.state
        if key in state.workers:
            return key
        named = [w.id for w in state.workers.values() if w.name == key]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(
                f"several live workers are named {key!r}; use an id ({', '.join(named)})"
            )
        decide.find_worker(state, key)
        raise NotFound(f"no worker {key!r}")
