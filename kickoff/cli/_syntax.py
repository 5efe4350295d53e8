"""The original tool's syntax -> the modern one, before typer parses anything. No I/O here.

`kickoff new ./run.sh arg1 -require cpu gpu -server host` becomes
`kickoff new --require cpu --require gpu --server host -- ./run.sh arg1`. Modern arguments
pass through unchanged, so translating twice changes nothing.

`new`'s words follow one rule (`parse_new`, and the README's paragraph "The one rule"):
what could mean two things is refused with a hint, never guessed.
"""

from __future__ import annotations

from kickoff.errors import InvalidInput

# Options that take every following word, up to the next dash-word, with one dash or two:
# the repeatable ones (`events -type submitted completed` too). Single-valued options such
# as `-task` and `-worker` do not: a second word would silently replace the first.
LIST_OPTIONS = frozenset(
    {"have", "require", "want", "add", "remove", "set", "state", "type", "resources"}
)

# `new`'s own options: a word naming one of them ends the command words.
NEW_FLAGS = frozenset({"wait", "follow", "json"})
NEW_VALUED = frozenset(
    {
        "require",
        "want",
        "priority",
        "max-attempts",
        "timeout",
        "idempotency-key",
        "from",
        "after",
        "after-any",
        "group",
        "max-running",
        "array",
        "retries",
        "retry-delay",
        "retry-on",
        "cwd",
        "env",
        "env-pass",
        "resources",
        "server",
        "token",
    }
)
# `new`'s options that take every following word, as the tag options do (`--after 3 4`).
NEW_LISTS = LIST_OPTIONS | {"after", "after-any", "retry-on"}
HELP_WORDS = frozenset({"-h", "-help", "--help"})
# Options that may come before the subcommand (`kickoff -server X status`).
GLOBAL_VALUED = frozenset({"server", "token"})

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyz")
_NAME = _NAME_START | frozenset("0123456789_-")


def is_dash_word(word: str) -> bool:
    """An option-looking word (`-have`, `--want`, `-h`, `--`); negative numbers are not."""
    return word == "--" or (
        len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] == "-")
    )


def _long_option(word: str) -> tuple[str, str | None, bool] | None:
    """`-name[=v]` (a name of two letters or more) or `--name[=v]` -> (name, inline value
    or None, single-dash?); a name is `[a-z][a-z0-9_-]*`, `_` read as `-`."""
    single = not word.startswith("--")
    if not word.startswith("-"):
        return None
    name, eq, value = word[1 if single else 2 :].partition("=")
    if len(name) < (2 if single else 1) or name[0] not in _NAME_START or not set(name) <= _NAME:
        return None
    return name.replace("_", "-"), value if eq else None, single


def _swallow(
    words: list[str], start: int, spelled: str, *, first: str | None = None
) -> tuple[list[str], int]:
    """`first` (an inline `=value`) and the words from `start` up to the next dash-word,
    and the index after them.

    Raises:
        InvalidInput: there is no value at all.
    """
    end = start
    while end < len(words) and not is_dash_word(words[end]):
        end += 1
    values = ([] if first is None else [first]) + words[start:end]
    if not values:
        raise InvalidInput(f"{spelled} needs a value")
    return values, end


def _emit(name: str, values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        # `--priority=-5`: never let a value that starts with a dash look like an option
        out.extend([f"--{name}={value}"] if value.startswith("-") else [f"--{name}", value])
    return out


def _translate_options(words: list[str]) -> list[str]:
    """Any command but `new`: `-word` -> `--word`; tag options swallow their words."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            out.extend(words[i - 1 :])
            break
        parsed = _long_option(word)
        if parsed is None:
            out.append(word)
            continue
        name, inline, single = parsed
        if name in LIST_OPTIONS:
            values, i = _swallow(words, i, word, first=inline)
            out.extend(_emit(name, values))
        elif name in GLOBAL_VALUED and inline is None and i < len(words):
            out.extend(_emit(name, [words[i]]))  # the value as it is (a token may start with -)
            i += 1
        elif single:
            out.append(f"--{name}" + ("" if inline is None else f"={inline}"))
        else:
            out.append(word)
    return out


class NewWords:
    """`kickoff new`'s words, sorted: its options (name, value) in order, and the command.
    (A plain class: typing's NamedTuple would cost `kickoff new` the import of typing.)"""

    __slots__ = ("command", "help", "options")

    def __init__(
        self,
        options: tuple[tuple[str, str | None], ...] = (),
        command: tuple[str, ...] = (),
        help: bool = False,
    ) -> None:
        self.options, self.command, self.help = options, command, help

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NewWords):
            return NotImplemented
        return (self.options, self.command, self.help) == (other.options, other.command, other.help)

    def __hash__(self) -> int:
        return hash((self.options, self.command, self.help))

    def __repr__(self) -> str:
        return f"NewWords({self.options!r}, {self.command!r}, help={self.help})"

    def args(self) -> list[str]:
        """The modern form typer parses: `new --opt value ... -- CMD...`."""
        if self.help:
            return ["new", "--help"]
        out = ["new"]
        for name, value in self.options:
            out.extend([f"--{name}"] if value is None else _emit(name, [value]))
        return [*out, *(["--", *self.command] if self.command else [])]


def _unknown(word: str) -> InvalidInput:
    return InvalidInput(
        f"unknown option {word}; if it belongs to the command, put the command after --: "
        "kickoff new [OPTIONS] -- CMD..."
    )


def parse_new(words: list[str]) -> NewWords:
    """`new`'s words by the one rule (README, "The one rule"); never a guess.

    The command is the words before the first option, or every word after `--` (or both,
    when nothing comes between them: one run of words). Before `--`, a word that starts
    with a dash is one of `new`'s options (one dash or two) or refused; a tag option
    (`-require`, `--want`, ...) and a list one (`--after`, `--after-any`, `--retry-on`)
    takes every word up to the next option; any other option
    takes the next word as its value (whatever it starts with), or none; any other word
    is refused.

    Raises:
        InvalidInput: an unknown option, an option without its value, or a word that is
            neither the command nor a value.
    """
    options: list[tuple[str, str | None]] = []
    command: list[str] = []
    i = 0
    while i < len(words) and not is_dash_word(words[i]):
        i += 1
    command.extend(words[:i])
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            if command and options and words[i:]:
                raise InvalidInput(
                    "the command is in two places, before the options and after --: give it "
                    "in one, kickoff new [OPTIONS] -- CMD..."
                )
            command.extend(words[i:])
            break
        if word in HELP_WORDS:
            if command:  # `kickoff new df -h`: df's -h, or kickoff's help?
                raise InvalidInput(
                    f"{word} after the command: for help, kickoff new --help; if it belongs "
                    "to the command, put the command after --: kickoff new [OPTIONS] -- CMD..."
                )
            return NewWords(help=True)
        if not is_dash_word(word):
            raise _stray(word, options)
        parsed = _long_option(word)
        if parsed is None or parsed[0] not in NEW_FLAGS | NEW_VALUED:
            raise _unknown(word)
        name, inline, _ = parsed
        if name in NEW_FLAGS:
            if inline is not None:
                raise InvalidInput(f"{word}: --{name} takes no value")
            options.append((name, None))
        elif name in NEW_LISTS:
            values, i = _swallow(words, i, word, first=inline)
            options.extend((name, value) for value in values)
        elif inline is not None:
            options.append((name, inline))
        elif i < len(words) and words[i] != "--":  # any word: `-priority -5`, a token `-x…`
            options.append((name, words[i]))
            i += 1
        else:
            raise InvalidInput(f"{word} needs a value")
    if not command:
        _check_some_command(options)
    return NewWords(tuple(options), tuple(command))


def _check_some_command(options: list[tuple[str, str | None]]) -> None:
    """`kickoff new --require cpu make`: make is a tag, and there is no command. Say so.

    Raises:
        InvalidInput: no command, no --from, and the last option took several tags.
    """
    if not options or any(name == "from" for name, _ in options):
        return
    last = options[-1][0]
    run = len(options)
    while run > 0 and options[run - 1][0] == last:
        run -= 1
    tags = [str(value) for _, value in options[run:]]
    if last in NEW_LISTS and len(tags) > 1:
        what = "tags" if last in LIST_OPTIONS else "values"
        raise InvalidInput(
            f"no command given: {' '.join(tags)} are all {what} of "
            f"--{last}; put the command after --: kickoff new [OPTIONS] -- CMD..."
        )


def _stray(word: str, options: list[tuple[str, str | None]]) -> InvalidInput:
    """A word after the options that no option takes."""
    name, value = options[-1]
    after = f"--{name}" + ("" if value is None else f" {value}")
    return InvalidInput(
        f"{word!r} after {after} is not part of the command: the command goes before the "
        "options (kickoff new CMD... --require TAG) or after -- (kickoff new --require TAG -- "
        "CMD...)"
    )


def _globals_first(args: list[str]) -> tuple[list[str], list[str]]:
    """`kickoff -server X status ...` -> (`--server X`, `status ...`)."""
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
        return [], args
    return hoisted, args[i:]


def translate(args: list[str]) -> list[str]:
    """Rewrite the original's single-dash syntax into what typer parses.

    - `-word` (two or more letters, not a negative number) becomes `--word`;
    - `-have/-require/-want/-add/-remove/-set/-state/-type`, and their `--` forms, take
      every following word up to the next dash-word (`-have cpu gpu` -> `--have cpu
      --have gpu`);
    - `new`: see `parse_new`; the command moves after a `--`.

    Raises:
        InvalidInput: an option that needs a value has none; `new`'s words break its rule.
    """
    hoisted, args = _globals_first(args)
    if not args:
        return []
    if args[0].startswith("-"):
        return _translate_options(args)
    head, rest = args[0], args[1:]
    if head == "new":
        words = parse_new(rest)
        before = parse_new(hoisted).options
        return NewWords((*before, *words.options), words.command, words.help).args()
    return [head, *hoisted, *_translate_options(rest)]
