"""Terminal primitives: what stands between a value and the bytes written to stdout or
stderr. Tables and `key  value` fields are `_tables`'s; values in words `_words`'s; each
command's view `_view_*`'s.

Escaping. Commands, output tails, names and event payloads come from whoever submitted a
task or runs a worker; shown raw, an escape sequence in them would retitle, clear or
rewrite the operator's terminal, so every control character (C0 but newline and tab in a
block, DEL, C1) is shown as a Python escape (`\\x1b`), on a terminal and piped alike
(`one_line`, `block`, `flat`). Width: a character's terminal cells (`width`, `cut`, `fit`).

Colour. A `Styled` is text in parts, each with a style name (`bold`, `red`, `bold red`,
`dim`), never read as markup; a `Stream` (stdout or stderr) shows the styles on a colour
terminal (unless NO_COLOR is set or TERM is dumb) and drops them elsewhere, so piped
output holds no escape sequence at all.

Output. Data goes to stdout (`out`), messages and errors to stderr (`err`, `error`);
`print_json` is `--json`'s way out (the standard library's json: orjson's import costs more
than all of `kickoff new`). Progress bars (rich's, imported only when one is shown) need a
terminal that can move its cursor: not TERM=dumb.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any, TextIO

_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0))}
_BLOCK_ESCAPES = {code: shown for code, shown in _ESCAPES.items() if chr(code) not in "\n\t"}
_LIVE_ESCAPES = {code: shown for code, shown in _BLOCK_ESCAPES.items() if chr(code) != "\r"}
ELLIPSIS = "…"


def one_line(text: str, limit: int | None = None) -> str:
    """Every control character shown as an escape (`\\x1b`, `\\n`), so one value stays on
    one line and never acts on a terminal; cut to `limit` characters with an ellipsis."""
    flat = text.translate(_ESCAPES)
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + ELLIPSIS
    return flat


def block(text: str) -> str:
    """Several lines (an output tail): as `one_line`, but newlines and tabs stay (and CRLF
    becomes a newline)."""
    return text.replace("\r\n", "\n").translate(_BLOCK_ESCAPES)


def live_output(text: str) -> str:
    """A task's output on a terminal (`kickoff logs`): as `block`, but a carriage return
    stays one (a progress bar redraws its line; it cannot act on the terminal)."""
    return text.translate(_LIVE_ESCAPES)


def _char_width(char: str) -> int:
    import unicodedata  # a C extension to load: only for text that is not ASCII

    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def width(text: str) -> int:
    """Terminal cells `text` takes (wide CJK characters take two, combining marks none)."""
    return len(text) if text.isascii() else sum(map(_char_width, text))


def cut(text: str, cells: int) -> str:
    """`text` in at most `cells` terminal cells, ending with an ellipsis if it was longer."""
    if width(text) <= cells:
        return text
    kept, used = [], 0
    for char in text:
        used += _char_width(char)
        if used > cells - 1:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS


class Styled:
    """Text in parts, each `(text, style)`; `plain` is the text alone. (Not a dataclass:
    importing dataclasses costs `kickoff new` several milliseconds.)"""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[tuple[str, str], ...] = ()) -> None:
        self.parts = parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Styled) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __repr__(self) -> str:
        return f"Styled({self.parts!r})"

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.parts)

    def __add__(self, other: Cell) -> Styled:
        return assemble(self, other)


Cell = str | Styled


def styled(text: str, style: str = "") -> Styled:
    return Styled(((text, style),))


def assemble(*pieces: Cell | tuple[str, str]) -> Styled:
    """One Styled from plain strings (no style), `(text, style)` pairs and Styled."""
    parts: list[tuple[str, str]] = []
    for piece in pieces:
        if isinstance(piece, Styled):
            parts.extend(piece.parts)
        elif isinstance(piece, tuple):
            parts.append(piece)
        else:
            parts.append((piece, ""))
    return Styled(tuple(parts))


def join(separator: Cell, items: Iterable[Cell]) -> Styled:
    pieces: list[Cell] = []
    for item in items:
        if pieces:
            pieces.append(separator)
        pieces.append(item)
    return assemble(*pieces)


def plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Styled) else cell


def flat(cell: Cell) -> Styled:
    """The cell with every part made `one_line` (its styles kept)."""
    if isinstance(cell, str):
        return styled(one_line(cell))
    return Styled(tuple((one_line(text), style) for text, style in cell.parts))


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
            cell = fit(flat(cell), self.width)
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


def fit(cell: Styled, cells: int) -> Styled:
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


def error(message: str) -> None:
    """`error: message` on stderr, `error:` red on a terminal."""
    err.line(assemble(("error:", "red"), " ", message))


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
