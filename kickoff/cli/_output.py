"""How the client commands look: state colors, relative ages, tables and key/value blocks.

On a terminal: rich, colored, aligned. Piped: plain text (tab-separated tables, ISO times),
so `cut`, `awk` and `grep` work. Either way, data never carries markup or a raw control
character to the screen (see `one_line`, `block`). `--json` never comes through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from kickoff.audit import history
from kickoff.cli._common import console
from kickoff.state.task_state import TaskState

STATES = tuple(str(s) for s in TaskState)
STATE_STYLES = {
    "pending": "yellow",
    "running": "cyan",
    "cancelling": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "alive": "green",
    "stopped": "dim",
    "lost": "red",
}
# What a terminal acts on: C0 (ESC among them), DEL and C1. Commands, output tails, names
# and event payloads come from whoever submitted a task or runs a worker; shown raw, an
# escape sequence in them would retitle, clear or rewrite the operator's terminal. So each
# is shown as a Python escape (`\x1b`), on a terminal and piped alike.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0))}
_BLOCK_ESCAPES = {code: shown for code, shown in _ESCAPES.items() if chr(code) not in "\n\t"}

Cell = str | Text


def is_terminal() -> bool:
    """Whether stdout is a terminal (rich output) or a pipe/file (plain output)."""
    return console.is_terminal


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ago(text: str | None, now: datetime) -> str:
    """`3s ago`, `5m ago`, `2h ago`, `4d ago`; `-` when there is no time."""
    at = parse_time(text)
    if at is None:
        return "-"
    seconds = (now - at).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -5 else "in " + span(-seconds)
    if seconds < 1:
        return "just now"
    return span(seconds) + " ago"


def span(seconds: float) -> str:
    """A coarse duration: `45s`, `12m`, `3h`, `5d`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def duration(seconds: float | None) -> str:
    """A precise duration: `0.42s`, `12.3s`, `4m05s`, `2h03m`; `-` for none."""
    return "-" if seconds is None else history.duration(seconds)


def when(text: str | None, now: datetime) -> str:
    """A time for people: relative on a terminal, ISO 8601 UTC when piped."""
    if text is None:
        return "-"
    return ago(text, now) if is_terminal() else text


def state(name: str | None) -> Text:
    return Text(one_line(name or "-"), style=STATE_STYLES.get(name or "", ""))


def one_line(text: str, limit: int | None = None) -> str:
    """Every control character shown as an escape (`\\x1b`, `\\n`), so one value stays on
    one line and never acts on a terminal."""
    flat = text.translate(_ESCAPES)
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat


def block(text: str) -> str:
    """Several lines (an output tail): as `one_line`, but newlines and tabs stay (and CRLF
    becomes a newline)."""
    return text.replace("\r\n", "\n").translate(_BLOCK_ESCAPES)


def as_text(cell: Cell) -> Text:
    """A cell as rich Text: never read as markup, control characters escaped.

    Text built by the views keeps its colors; one that somehow still holds a control
    character is flattened to its escaped plain text.
    """
    if not isinstance(cell, Text):
        return Text(one_line(cell))
    if _CONTROL.search(cell.plain) is None:
        return cell
    return Text(one_line(cell.plain), style=cell.style)


def tags(values: Iterable[str] | None) -> str:
    return " ".join(values or ()) or "-"


def counts_line(counts: Mapping[str, int]) -> Text:
    """`3 pending · 1 running · 10 succeeded`, colored, states with zero left out."""
    parts: list[Text] = []
    for name in STATES:
        n = counts.get(name, 0)
        if n:
            parts.append(Text.assemble((f"{n:,}", "bold"), " ", (name, STATE_STYLES[name])))
    if not parts:
        return Text("no tasks", style="dim")
    return Text(" · ").join(parts)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, right: Sequence[str] = ()
) -> None:
    """Print a table: rich and aligned on a terminal, tab-separated with a header when piped."""
    if not is_terminal():
        lines = ["\t".join(headers)]
        lines.extend("\t".join(one_line(_plain(cell)) for cell in row) for row in rows)
        console.file.write("\n".join(lines) + "\n")
        return
    out = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for header in headers:
        last = header == headers[-1]
        out.add_column(
            header,
            justify="right" if header in right else "left",
            no_wrap=True,
            overflow="ellipsis" if last else "fold",
            ratio=1 if last else None,
        )
    for row in rows:
        out.add_row(*(as_text(cell) for cell in row))
    console.print(out)


def fields(rows: Sequence[tuple[str, Cell]]) -> None:
    """Print `key  value` lines, aligned; plain `key: value` when piped."""
    if not is_terminal():
        width = max((len(key) for key, _ in rows), default=0) + 1
        lines = [f"{key + ':':<{width}} {one_line(_plain(value))}" for key, value in rows]
        console.file.write("\n".join(lines) + "\n")
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, as_text(value))
    console.print(grid)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def heading(line: Cell) -> None:
    """One line: bold unless styled already on a terminal; plain when piped."""
    if not is_terminal():
        console.file.write(one_line(_plain(line)) + "\n")
    elif isinstance(line, Text):
        console.print(as_text(line))
    else:
        console.print(Text(one_line(line), style="bold"))


def plain(lines: str) -> None:
    """Several lines (an output tail) on stdout: never read as markup, control characters
    but newlines and tabs escaped (`block`)."""
    shown = block(lines)
    console.file.write(shown if shown.endswith("\n") else shown + "\n")
    console.file.flush()


def summary(data: Mapping[str, Any], *, skip: Iterable[str] = (), limit: int = 100) -> str:
    """An event payload as `key=value ...` for one table cell."""
    skipped = set(skip)
    parts = []
    for key, value in data.items():
        if key in skipped or value is None or value == [] or value == {}:
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    return one_line(" ".join(parts), limit)
