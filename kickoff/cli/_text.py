"""Styled text, and what makes any value safe to show on a terminal. Pure: no I/O here.

A `Styled` is text in parts, each with a style name (`bold`, `red`, `bold red`, `dim`);
`_screen` shows the styles on a color terminal and drops them elsewhere. Its text is
never read as markup. Commands, output tails, names and event payloads come from whoever
submitted a task or runs a worker; shown raw, an escape sequence in them would retitle,
clear or rewrite the operator's terminal, so every control character (C0 but newline and
tab in a block, DEL, C1) is shown as a Python escape (`\\x1b`), on a terminal and piped
alike (`one_line`, `block`).
"""

from __future__ import annotations

from collections.abc import Iterable

_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0))}
_BLOCK_ESCAPES = {code: shown for code, shown in _ESCAPES.items() if chr(code) not in "\n\t"}
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
