"""Where output goes and how it looks there: stdout and stderr, a terminal or a pipe.

On a terminal: aligned tables whose columns keep the width of their content, the last
one (the command, the details) cut with an ellipsis at the screen's edge; colors, unless
NO_COLOR is set or TERM is dumb. Piped or redirected: plain text and tab-separated tables
with a header line, no escape sequence at all, so `cut`, `awk` and `grep` work. Either
way every cell is escaped (`_text.flat`): data never acts on the operator's terminal.
Data goes to stdout, messages and errors to stderr; `print_json` is `--json`'s way out
(the standard library's json: orjson's import costs more than all of `kickoff new`).
Progress bars (rich's, imported only when one is shown) need a terminal that can move its
cursor: not TERM=dumb.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from kickoff.cli._text import Cell, Styled, assemble, block, cut, flat, styled, width

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any, TextIO

GAP = "   "  # between table columns
MIN_LAST = 12  # the last column keeps at least this many cells, even past the edge
RULE = "─"
SGR = {
    "bold": "1",
    "dim": "2",
    "italic": "3",
    "underline": "4",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


class Stream:
    """stdout or stderr, looked up at each use (tests swap them); `terminal` and
    `columns` force what would otherwise be detected."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.terminal: bool | None = None
        self.columns: int | None = None

    @property
    def file(self) -> TextIO:
        return getattr(sys, self.name)  # type: ignore[no-any-return]

    @property
    def is_terminal(self) -> bool:
        if self.terminal is not None:
            return self.terminal
        try:
            return self.file.isatty()
        except (AttributeError, ValueError):
            return False

    @property
    def color(self) -> bool:
        env = os.environ
        return self.is_terminal and not env.get("NO_COLOR") and env.get("TERM") != "dumb"

    @property
    def live(self) -> bool:
        """A terminal that can move its cursor (for progress bars): not TERM=dumb."""
        return self.is_terminal and os.environ.get("TERM") != "dumb"

    @property
    def width(self) -> int:
        if self.columns is not None:
            return self.columns
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        try:
            return os.get_terminal_size(self.file.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return 80

    def render(self, cell: Cell) -> str:
        """One line: escaped, in color if this is a color terminal."""
        shown = flat(cell)
        if not self.color:
            return shown.plain
        return "".join(_sgr(text, style) for text, style in shown.parts)

    def line(self, cell: Cell = "", *, cut_at_edge: bool = False) -> None:
        """Write one line (cut with an ellipsis at the screen's edge if asked)."""
        if cut_at_edge and self.is_terminal:
            cell = _cut(flat(cell), self.width)
        self.write(self.render(cell) + "\n")

    def write(self, text: str) -> None:
        self.file.write(text)
        if self.name == "stderr":
            self.file.flush()

    def flush(self) -> None:
        self.file.flush()


out = Stream("stdout")
err = Stream("stderr")


def _sgr(text: str, style: str) -> str:
    codes = ";".join(SGR[word] for word in style.split() if word in SGR)
    return f"\x1b[{codes}m{text}\x1b[0m" if codes and text else text


def _cut(cell: Styled, cells: int) -> Styled:
    """The cell in at most `cells` terminal cells, the last part ending with an ellipsis."""
    if width(cell.plain) <= cells:
        return cell
    parts: list[tuple[str, str]] = []
    left = cells
    for text, style in cell.parts:
        if width(text) >= left:
            parts.append((cut(text, left), style))
            break
        parts.append((text, style))
        left -= width(text)
    return Styled(tuple(parts))


def _pad(cell: Styled, cells: int, *, right: bool) -> Styled:
    room = " " * max(cells - width(cell.plain), 0)
    return assemble(room, cell) if right else assemble(cell, room)


def error(message: str) -> None:
    """`error: message` on stderr, `error:` red on a terminal."""
    err.line(assemble(("error:", "red"), " ", message))


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    right: Sequence[str] = (),
    stream: Stream = out,
) -> None:
    """A table: tab-separated with a header when piped; on a terminal, aligned under a
    bold header and a rule, every column as wide as its content but the last, which is
    cut with an ellipsis at the screen's edge."""
    cells = [[flat(cell) for cell in row] for row in rows]
    if not stream.is_terminal:
        lines = ["\t".join(headers), *("\t".join(c.plain for c in row) for row in cells)]
        stream.write("".join(line + "\n" for line in lines))
        return
    heads = [styled(header, "bold") for header in headers]
    widths = [max(width(c.plain) for c in column) for column in zip(heads, *cells, strict=True)]
    fixed = sum(widths[:-1]) + len(GAP) * (len(widths) - 1)
    widths[-1] = min(widths[-1], max(stream.width - fixed, MIN_LAST))
    flush = [header in right for header in headers]
    shown: list[Cell] = [_row(heads, widths, flush), RULE * (fixed + widths[-1])]
    shown.extend(_row(row, widths, flush) for row in cells)
    stream.write("".join(stream.render(line) + "\n" for line in shown))


def _row(row: Sequence[Styled], widths: Sequence[int], right: Sequence[bool]) -> Styled:
    *first, last = row
    shown = [_pad(c, w, right=r) for c, w, r in zip(first, widths, right, strict=False)]
    end = _cut(last, widths[-1])
    shown.append(_pad(end, widths[-1], right=True) if right[-1] else end)
    pieces: list[Cell] = []
    for cell in shown:
        pieces.extend((GAP, cell) if pieces else (cell,))
    return assemble(*pieces)


def fields(rows: Sequence[tuple[str, Cell]], *, stream: Stream = out) -> None:
    """`key  value` lines, the keys bold and aligned; plain `key: value` when piped."""
    if not stream.is_terminal:
        wide = max((len(key) for key, _ in rows), default=0) + 1
        stream.write("".join(f"{key + ':':<{wide}} {flat(v).plain}\n" for key, v in rows))
        return
    wide = max((width(key) for key, _ in rows), default=0)
    for key, value in rows:
        stream.line(assemble((key + " " * (wide - width(key)), "bold"), "  ", value))


def heading(line: Cell, *, stream: Stream = out) -> None:
    """One line: bold unless styled already (on a terminal)."""
    stream.line(styled(line, "bold") if isinstance(line, str) else line)


def lines(text: str, *, stream: Stream = out) -> None:
    """Several lines (an output tail) as they are, control characters but newlines and
    tabs escaped (`block`)."""
    shown = block(text)
    stream.write(shown if shown.endswith("\n") else shown + "\n")


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def print_json_line(data: Any) -> None:
    """One compact JSON line on stdout (for streams and jq)."""
    out.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


if TYPE_CHECKING:
    Update = Callable[..., None]  # update(completed=N) or update(advance=N), description=...


@contextmanager
def progress_bar(what: str, total: int, *, show: bool, spinner: bool = False) -> Iterator[Update]:
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
