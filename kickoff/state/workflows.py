"""The records behind workflows (SPEC §12), kept beside the live tasks. No I/O here.

Groups (their cap, running count and the shapes of their own), a waiting task's
dependencies, retry policies, and the ids of finished tasks that did not succeed (a
dependency may name a task that left memory long ago). The fold keeps them; `decide`
reads them.
"""

from __future__ import annotations

import re
from typing import Any

from kickoff.resources import NONE, Resources
from kickoff.state.matcher import Matcher, Shape

AUTO_GROUP = re.compile(r"g([0-9]{1,18})")
"""The names the server gives unnamed groups (`g17` for group id 17); one is also the
alias of a named group with that id."""


def group_label(group_id: int, name: str | None) -> str:
    """What a group is called: its name, else `g<id>`."""
    return name if name is not None else f"g{group_id}"


class Group:
    """A group of tasks: `--from`, `--array`, `--group NAME`.

    A capped group's tasks live in shapes of its own (`shapes`), which leave the
    matcher's views while `running` is at `max_running` and come back when one ends:
    the cap costs a claim nothing and never scans the group's tasks.
    """

    __slots__ = ("id", "max_running", "name", "running", "shapes")

    def __init__(self, group_id: int, name: str | None, max_running: int | None) -> None:
        self.id = group_id
        self.name = name
        self.max_running = max_running
        self.running = 0  # its tasks running or cancelling
        self.shapes: list[Shape] = []  # its own shapes, when capped

    @property
    def label(self) -> str:
        return group_label(self.id, self.name)

    @property
    def at_cap(self) -> bool:
        return self.max_running is not None and self.running >= self.max_running

    def shape(
        self,
        matcher: Matcher,
        require: frozenset[str],
        want: frozenset[str],
        resources: Resources = NONE,
    ) -> Shape:
        """The shape its tasks with (require, want, resources) live in: a shape of its own
        if capped."""
        if self.max_running is None:
            return matcher.shape(require, want, None, resources)
        shape = matcher.shape(require, want, self.id, resources)
        if shape.group_id == self.id and shape not in self.shapes:
            self.shapes.append(shape)
            if self.at_cap:
                matcher.suspend(shape)
        return shape

    def started(self, matcher: Matcher) -> None:
        """One of its tasks started running."""
        self.running += 1
        if self.at_cap:
            for shape in self.shapes:
                matcher.suspend(shape)

    def stopped(self, matcher: Matcher) -> None:
        """One of its running tasks stopped (it ended, or it went back to wait or queue)."""
        was_at_cap = self.at_cap
        self.running -= 1
        if was_at_cap and not self.at_cap:
            for shape in self.shapes:
                matcher.resume(shape)

    def snapshot(self) -> tuple[Any, ...]:
        return (self.id, self.name, self.max_running, self.running)


class Waiting:
    """A waiting task's dependencies: `after` must succeed, `after_any` must end; `left`
    counts those of both that have not ended yet."""

    __slots__ = ("after", "after_any", "left")

    def __init__(self, after: tuple[int, ...], after_any: tuple[int, ...], left: int) -> None:
        self.after = after
        self.after_any = after_any
        self.left = left

    def snapshot(self) -> tuple[Any, ...]:
        return (self.after, self.after_any, self.left)


class Retry:
    """A `--retries` policy, shared by the tasks that have the same one (a batch's tasks
    mostly do: a pending task with retries costs one dict entry more, not a record)."""

    __slots__ = ("delay_s", "on", "total")

    def __init__(self, total: int, delay_s: float, on: tuple[int | str, ...] | None) -> None:
        self.total = total
        self.delay_s = delay_s
        self.on = on

    def applies(self, used: int, exit_code: int, timed_out: bool) -> bool:
        """Whether this failure is one to retry, `used` retries having been used."""
        if used >= self.total:
            return False
        if self.on is None:
            return True
        return "timeout" in self.on if timed_out else exit_code in self.on

    def delay_after(self, used: int) -> float:
        """The wait before the next retry: the delay, doubled for each retry so far."""
        return float(self.delay_s * 2**used)

    def snapshot(self) -> tuple[Any, ...]:
        return (self.total, self.delay_s, self.on)


class IdSet:
    """A set of task ids as a bit per id: finished tasks that failed (or were cancelled)
    cost an eighth of a byte each, however many there are."""

    __slots__ = ("bits",)

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, task_id: int) -> None:
        index = task_id >> 3
        if index >= len(self.bits):
            self.bits.extend(bytes(index + 1 - len(self.bits) + len(self.bits) // 2))
        self.bits[index] |= 1 << (task_id & 7)

    def __contains__(self, task_id: int) -> bool:
        index = task_id >> 3
        return index < len(self.bits) and bool(self.bits[index] & (1 << (task_id & 7)))

    def ids(self) -> list[int]:
        return [
            (index << 3) | bit
            for index, byte in enumerate(self.bits)
            if byte
            for bit in range(8)
            if byte & (1 << bit)
        ]
