"""Progress bars on stderr, for a terminal that can move its cursor (not TERM=dumb) only:
rich is imported when one is shown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kickoff.cli._screen import err

Update = Callable[..., None]  # update(completed=N) or update(advance=N), description=...


@contextmanager
def bar(what: str, total: int, *, show: bool, spinner: bool = False) -> Iterator[Update]:
    """A transient bar counting to `total` on stderr when `show` (and stderr is a live
    terminal); the function to move it (a no-op otherwise)."""
    if not (show and err.live):
        yield lambda **_: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[ProgressColumn] = [SpinnerColumn()] if spinner else []
    columns += [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    console = Console(stderr=True, highlight=False, force_terminal=True)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda **changes: progress.update(task, **changes)
