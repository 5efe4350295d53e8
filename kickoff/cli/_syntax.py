"""The original tool's syntax -> the modern one, before typer parses anything. No I/O here.

`kickoff new ./run.sh arg1 -require cpu gpu -server host` becomes
`kickoff new --require cpu --require gpu --server host -- ./run.sh arg1`. Modern arguments
pass through unchanged, so translating twice changes nothing.
"""

from __future__ import annotations

import re

from kickoff.errors import InvalidInput

# Options that take every following word, up to the next dash-word, in the single-dash form:
# the repeatable ones (`events -type submitted completed` too). Single-valued options such
# as `-task` and `-worker` do not: a second word would silently replace the first.
LIST_OPTIONS = frozenset({"have", "require", "want", "add", "remove", "set", "state", "type"})

# `new`'s own options: a word naming one of them ends the command words.
NEW_FLAGS = frozenset({"wait", "json"})
NEW_VALUED = frozenset(
    {
        "require",
        "want",
        "priority",
        "max-attempts",
        "timeout",
        "idempotency-key",
        "from",
        "server",
        "token",
    }
)
# Options that may come before the subcommand (`kickoff -server X status`).
GLOBAL_VALUED = frozenset({"server", "token"})

_SINGLE_LONG = re.compile(r"-([a-z][a-z0-9_-]+)(=.*)?", re.DOTALL)
_DOUBLE_LONG = re.compile(r"--([a-z][a-z0-9_-]*)(=.*)?", re.DOTALL)


def is_dash_word(word: str) -> bool:
    """An option-looking word (`-have`, `--want`, `-h`, `--`); negative numbers are not."""
    return word == "--" or (
        len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] == "-")
    )


def _long_option(word: str) -> tuple[str, str | None, bool] | None:
    """`-name[=v]` or `--name[=v]` -> (name, inline value or None, single-dash?)."""
    match = _SINGLE_LONG.fullmatch(word)
    single = match is not None
    match = match or _DOUBLE_LONG.fullmatch(word)
    if match is None:
        return None
    value = match[2][1:] if match[2] is not None else None
    return match[1].replace("_", "-"), value, single


def _swallow(words: list[str], start: int, spelled: str) -> tuple[list[str], int]:
    """The words from `start` up to the next dash-word, and the index after them.

    Raises:
        InvalidInput: there is no such word.
    """
    end = start
    while end < len(words) and not is_dash_word(words[end]):
        end += 1
    if end == start:
        raise InvalidInput(f"{spelled} needs a value")
    return words[start:end], end


def _emit(name: str, values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        # `--priority=-5`: never let a value that starts with a dash look like an option
        out.extend([f"--{name}={value}"] if value.startswith("-") else [f"--{name}", value])
    return out


def _translate_options(words: list[str]) -> list[str]:
    """Any command but `new`: `-word` -> `--word`; list options swallow their words."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            out.extend(words[i - 1 :])
            break
        match = _SINGLE_LONG.fullmatch(word)
        if match is None:
            out.append(word)
            continue
        name = match[1].replace("_", "-")
        if match[2] is None and name in LIST_OPTIONS:
            values, i = _swallow(words, i, word)
            out.extend(_emit(name, values))
        else:
            out.append(f"--{name}{match[2] or ''}")
    return out


def _translate_new(words: list[str]) -> list[str]:
    """`new`: the words before the first kickoff option (or after `--`) are the command."""
    options: list[str] = []
    command: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            command.extend(words[i:])
            break
        if not command and word in ("-h", "-help", "--help"):
            options.append("--help")
            continue
        parsed = _long_option(word)
        if parsed is None or parsed[0] not in NEW_FLAGS | NEW_VALUED:
            if command or not is_dash_word(word):
                command.append(word)
            else:  # an unknown option before the command: leave it for typer to report
                options.append(word)
            continue
        name, inline, single = parsed
        if inline is not None:
            options.append(f"--{name}={inline}")
        elif name in NEW_FLAGS:
            options.append(f"--{name}")
        elif single and name in LIST_OPTIONS:
            values, i = _swallow(words, i, word)
            options.extend(_emit(name, values))
        elif i < len(words) and words[i] != "--":  # one value, even `-priority -5`
            options.extend(_emit(name, [words[i]]))
            i += 1
        else:
            raise InvalidInput(f"{word} needs a value")
    return ["new", *options, *(["--", *command] if command else [])]


def _hoist_globals(args: list[str]) -> list[str]:
    """`kickoff -server X status ...` -> `kickoff status -server X ...`."""
    hoisted: list[str] = []
    i = 0
    while i + 1 < len(args):
        parsed = _long_option(args[i])
        if parsed is None or parsed[0] not in GLOBAL_VALUED:
            break
        if parsed[1] is not None:
            hoisted.append(f"--{parsed[0]}={parsed[1]}")
            i += 1
        else:
            hoisted.extend(_emit(parsed[0], [args[i + 1]]))
            i += 2
    if not hoisted or i >= len(args) or args[i].startswith("-"):
        return args
    return [args[i], *hoisted, *args[i + 1 :]]


def translate(args: list[str]) -> list[str]:
    """Rewrite the original's single-dash syntax into what typer parses.

    - `-word` (two or more letters, not a negative number) becomes `--word`;
    - `-have/-require/-want/-add/-remove/-set/-state/-type` take every following word up to
      the next dash-word (`-have cpu gpu` -> `--have cpu --have gpu`);
    - `new CMD... -opt ...`: the words before the first kickoff option are the command,
      so they move after a `--`; everything after an explicit `--` is the command, verbatim.

    Raises:
        InvalidInput: an option that needs a value has none.
    """
    args = _hoist_globals(args)
    if not args:
        return []
    if args[0].startswith("-"):
        return _translate_options(args)
    head, rest = args[0], args[1:]
    if head == "new":
        return _translate_new(rest)
    return [head, *_translate_options(rest)]
