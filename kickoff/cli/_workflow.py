"""`kickoff new`'s workflow options in words -> the API's fields (SPEC §12). No I/O here.

`--after`/`--after-any` ids, `--retry-on` exit codes, `--array` index lists, and the group
a submission joins. Each refuses a bad word with a clear message before anything is sent.
"""

from __future__ import annotations

from kickoff import defaults
from kickoff.errors import InvalidInput
from kickoff.tags import split_tags

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any


def task_ids(values: list[str] | None, option: str) -> list[int]:
    """Task ids from repeated words, each maybe `12,13`; in order, without repeats.

    Raises:
        InvalidInput: a word that is not a task id.
    """
    ids: dict[int, None] = {}
    for word in split_tags(values or ()):
        if not (word.isascii() and word.isdigit() and 0 < int(word) <= defaults.MAX_TASK_ID):
            raise InvalidInput(f"invalid value for {option}: {word!r} is not a task id")
        ids[int(word)] = None
    if len(ids) > defaults.MAX_DEPENDENCIES:
        raise InvalidInput(f"{option}: {len(ids)} ids, at most {defaults.MAX_DEPENDENCIES}")
    return list(ids)


def retry_codes(values: list[str] | None) -> list[int | str] | None:
    """`--retry-on 1 2 timeout` -> [1, 2, "timeout"]; None when not given (any failure).

    Raises:
        InvalidInput: a word that is neither an exit code nor `timeout`.
    """
    if not values:
        return None
    codes: list[int | str] = []
    for word in split_tags(values):
        if word == "timeout":
            codes.append(word)
            continue
        try:
            codes.append(int(word))
        except ValueError:
            raise InvalidInput(
                f"invalid value for --retry-on: {word!r} is not an exit code or `timeout`"
            ) from None
    return codes


def _number(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= defaults.MAX_ARRAY_INDEX):
        raise InvalidInput(
            f"--array {spec}: {text!r} is not an index (0 to {defaults.MAX_ARRAY_INDEX:,})"
        )
    return int(text)


def array_indices(spec: str) -> tuple[list[int], int | None]:
    """`1-240`, `0-99:2` (a step), `1,5,7`, or several of them (`1-10,20`), optionally
    ending in `%N` (Slurm's at most N at once) -> (the indices, N or None).

    Raises:
        InvalidInput: a malformed spec, an empty or reversed range, repeats, or more than
            MAX_ARRAY_TASKS indices.
    """
    body, percent, cap_text = spec.partition("%")
    cap = None
    if percent:
        if not (cap_text.isascii() and cap_text.isdigit() and int(cap_text) > 0):
            raise InvalidInput(f"--array {spec}: after % comes how many may run at once")
        cap = int(cap_text)
    indices: list[int] = []
    for part in body.split(","):
        first, dash, rest = part.partition("-")
        last, colon, step_text = rest.partition(":") if dash else ("", "", "")
        if not first or (dash and not last):
            raise InvalidInput(
                f"--array {spec}: expected N, N-M or N-M:STEP (1-240, 0-99:2, 1,5,7)"
            )
        low = _number(first, spec)
        high = _number(last, spec) if dash else low
        step = _number(step_text, spec) if colon else 1
        if high < low or step == 0:
            raise InvalidInput(f"--array {spec}: {part} is an empty range")
        count = (high - low) // step + 1
        if len(indices) + count > defaults.MAX_ARRAY_TASKS:
            raise InvalidInput(
                f"--array {spec}: more than {defaults.MAX_ARRAY_TASKS:,} tasks in one array"
            )
        indices.extend(range(low, high + 1, step))
    if len(set(indices)) != len(indices):
        raise InvalidInput(f"--array {spec}: an index appears twice")
    return indices, cap


def group_request(
    name: str | None, max_running: int | None, *, always: bool
) -> dict[str, Any] | None:
    """A submit's `group` ({} for a new group the server names); None when the submission
    is no group (`always`: it is one, as every `--from` and `--array` is)."""
    if name is None and max_running is None and not always:
        return None
    group: dict[str, Any] = {} if name is None else {"name": name}
    if max_running is not None:
        group["max_running"] = max_running
    return group
