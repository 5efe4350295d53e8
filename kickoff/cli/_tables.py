"""Tables and fields: aligned on a terminal, tab-separated (or `key: value`) when piped.

On a terminal, columns keep the width of their content, the last one (the command, the
details) cut with an ellipsis at the screen's edge, under a bold header and a rule. Piped
or redirected: a header line and tab-separated rows, so `cut`, `awk` and `grep` work.
Either way every cell is escaped (`_terminal.flat`): data never acts on the operator's
terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kickoff.cli._terminal import Cell, Stream, Styled, assemble, fit, flat, out, styled, width

GAP = "   "  # between table columns
MIN_LAST = 12  # the last column keeps at least this many cells, even past the edge
RULE = "─"


def _pad(cell: Styled, cells: int, *, right: bool) -> Styled:
    room = " " * max(cells - width(cell.plain), 0)
    return assemble(room, cell) if right else assemble(cell, room)


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
    end = fit(last, widths[-1])
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
