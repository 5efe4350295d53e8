"""Counted resources (SPEC §10): names, amounts with binary suffixes, `gpu=2,mem=16G` read
and shown; shared by the API, the CLI and the worker. No I/O here.

A request or a declaration is `Resources`: (name, amount) pairs sorted by name, the form
events carry. A task asks for at least 1 of each name it gives; a worker may declare 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from kickoff.defaults import MAX_GPUS, MAX_RESOURCE_AMOUNT, MAX_RESOURCE_NAME_CHARS, MAX_RESOURCES
from kickoff.errors import InvalidInput

Resources = tuple[tuple[str, int], ...]
NONE: Resources = ()
GPU = "gpu"  # the one resource whose units are devices, handed out by id

NAME_RE = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_RESOURCE_NAME_CHARS}}}")
_AMOUNT_RE = re.compile(r"([0-9]{1,20})([KMGTkmgt]?)")
_SPLIT_RE = re.compile(r"[\s,;]+")
SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SHOWN = (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))
GRAMMAR = (
    f"NAME=AMOUNT: a name of 1-{MAX_RESOURCE_NAME_CHARS} characters from A-Z a-z 0-9 _ . -, "
    "a whole number, optionally with K, M, G or T (64G = 64 x 2^30)"
)


def amount(text: str, *, field: str, name: str) -> int:
    """`16G` -> 17179869184.

    Raises:
        InvalidInput: not a whole number with an optional K, M, G or T.
    """
    found = _AMOUNT_RE.fullmatch(text.strip())
    if found is None:
        raise InvalidInput(
            f"{field}: invalid amount {text[:40]!r} for {name}: a whole number, optionally "
            "with K, M, G or T (64G = 64 x 2^30)"
        )
    return int(found[1]) * SUFFIXES[found[2].upper()]


def check(pairs: Iterable[tuple[Any, Any]], *, field: str, task: bool) -> Resources:
    """Checked, sorted pairs: names by the grammar, each once; amounts whole numbers
    (strings may carry a suffix) from 1 for a task, from 0 for a worker, up to the limit;
    `gpu` at most MAX_GPUS; at most MAX_RESOURCES names.

    Raises:
        InvalidInput: naming `field` and what is wrong.
    """
    out: dict[str, int] = {}
    for name, value in pairs:
        if type(name) is not str or not NAME_RE.fullmatch(name):
            raise InvalidInput(f"{field}: invalid resource name {str(name)[:80]!r}: {GRAMMAR}")
        if name in out:
            raise InvalidInput(f"{field}: {name} is given twice")
        if type(value) is str:
            value = amount(value, field=field, name=name)
        elif type(value) is not int:
            raise InvalidInput(f"{field}.{name}: expected a whole number (or a string like 16G)")
        low = 1 if task else 0
        if not low <= value <= MAX_RESOURCE_AMOUNT:
            least = "a task asks for at least 1" if task else "amounts are never negative"
            top = show_amount(MAX_RESOURCE_AMOUNT)
            raise InvalidInput(f"{field}.{name}: {value} is out of range {low}..{top} ({least})")
        if name == GPU and value > MAX_GPUS:
            raise InvalidInput(f"{field}.gpu: {value} devices, at most {MAX_GPUS}")
        out[name] = value
    if len(out) > MAX_RESOURCES:
        raise InvalidInput(f"{field}: {len(out)} resources, at most {MAX_RESOURCES} allowed")
    return tuple(sorted(out.items()))


def parse(words: Iterable[str], *, field: str = "resources", task: bool) -> Resources:
    """`["gpu=2,mem=16G"]` or `["gpu=2", "mem=16G"]` (separated by spaces, commas or
    semicolons, as tags are) -> checked pairs.

    Raises:
        InvalidInput: a word that is not NAME=AMOUNT, or see `check`.
    """
    pairs: list[tuple[str, str]] = []
    for word in words:
        for item in _SPLIT_RE.split(word):
            if not item:
                continue
            name, equals, value = item.partition("=")
            if not equals or not value:
                raise InvalidInput(f"{field}: {item[:80]!r} is not {GRAMMAR}")
            pairs.append((name, value))
    return check(pairs, field=field, task=task)


def from_json(value: Any, *, field: str, task: bool) -> Resources:
    """A JSON `resources`: an object of names to amounts (integers, or strings like
    "16G"), or one string `gpu=2,mem=16G`; null is none.

    Raises:
        InvalidInput: see `check`.
    """
    if value is None:
        return NONE
    if type(value) is str:
        return parse([value], field=field, task=task)
    if type(value) is not dict:
        raise InvalidInput(f"{field}: expected an object of names to amounts, or NAME=AMOUNT,...")
    if len(value) > MAX_RESOURCES:
        raise InvalidInput(f"{field}: {len(value)} resources, at most {MAX_RESOURCES} allowed")
    return check(value.items(), field=field, task=task)


def show_amount(value: int) -> str:
    """17179869184 -> `16G`: the largest suffix that divides it exactly."""
    for suffix, unit in _SHOWN:
        if value >= unit and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def show(resources: Resources | Mapping[str, int]) -> str:
    """`gpu=2,mem=16G` (empty for none): the form `--resources` takes and KICKOFF_RESOURCES
    holds."""
    items = resources.items() if isinstance(resources, Mapping) else resources
    return ",".join(f"{name}={show_amount(value)}" for name, value in sorted(items))


def fits(request: Resources, free: Mapping[str, int]) -> bool:
    """Whether every requested amount is free."""
    return all(free.get(name, 0) >= value for name, value in request)


def lacking(request: Resources, free: Mapping[str, int]) -> Resources:
    """The requested amounts that are not free, each as much as is missing."""
    return tuple(
        (name, value - free.get(name, 0)) for name, value in request if free.get(name, 0) < value
    )
