"""Which attempts an answer from the server may start: the ones this worker never heard of
while the question was out. No I/O here.

An answer (to a claim, to a claim sent with a report, to a reconciliation) tells how the
server was at some moment after the question left; it arrives later still. Meanwhile the
worker may have finished an attempt the answer still calls running, and had its report
acknowledged. An attempt the worker held when it asked, or took up or let go of since, is
therefore never news: only one it never heard of in that window can be a claim whose
answer was lost. The worker asks `Ledger.ask()` before sending, tells it of every attempt
it lets go of (`ended`), and checks the answer with `ended_since`. What it holds right
now (running, or reported but not yet acknowledged) it checks itself.
"""

from __future__ import annotations

Key = tuple[int, int]  # (task_id, attempt)


class Ledger:
    """Attempts let go of while questions were out, each marked with the question count.

    Nothing is kept while no question is out (a busy worker asks one per task, so the
    record stays as small as the number of attempts that ended during one long-poll).
    """

    def __init__(self) -> None:
        self._asked = 0  # questions asked so far: the mark of the newest
        self._open: set[int] = set()  # marks of the questions still out
        self._ended: dict[Key, int] = {}  # attempt -> questions asked when it ended

    def ask(self) -> int:
        """A question is about to be sent; returns its mark (pass it to `answered`)."""
        self._asked += 1
        self._open.add(self._asked)
        return self._asked

    def answered(self, mark: int) -> None:
        """The question's answer was handled (or it failed): forget what only it needed."""
        self._open.discard(mark)
        if not self._open:
            self._ended.clear()
        elif len(self._ended) > 64 * len(self._open):
            oldest = min(self._open)
            self._ended = {key: at for key, at in self._ended.items() if at >= oldest}

    def ended(self, key: Key) -> None:
        """The worker let go of an attempt: its report was acknowledged or refused, or its
        registration was lost."""
        if self._open:
            self._ended[key] = self._asked

    def ended_since(self, key: Key, mark: int) -> bool:
        """Whether the attempt was let go of after the question `mark` was asked."""
        return self._ended.get(key, 0) >= mark
