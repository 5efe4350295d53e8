"""`kickoff new` and `kickoff status` without typer: what people run in shell loops.

Importing typer (and click) costs more than the 50 ms these commands have in all (docs/
cli.md, "Start-up"), so their words are read here, by `_syntax.parse_new` and the option
tables below, and typer only shows their `--help` (client_cmds declares the same options
for it; tests/cli/test_syntax.py keeps the two alike). What the commands do is here too,
and client_cmds' typer commands call it.
"""

from __future__ import annotations

from kickoff import defaults
from kickoff.cli import _submit, _syntax, _where, _workflow
from kickoff.cli._terminal import print_json
from kickoff.client import Client
from kickoff.errors import InvalidInput
from kickoff.state.task_state import LIVE_STATES
from kickoff.tags import check_tags, split_tags

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any


class Opt:
    """One option: a flag, one value (converted, range-checked), or many (`--state a b`)."""

    __slots__ = ("default", "high", "kind", "low", "type")

    def __init__(
        self,
        kind: str = "value",
        type: type = str,
        low: float | None = None,
        high: float | None = None,
        default: Any = None,
    ) -> None:
        self.kind, self.type, self.low, self.high, self.default = kind, type, low, high, default


FLAG = Opt("flag", bool, default=False)
MANY = Opt("many", default=())
SHARED = {"json": FLAG, "server": Opt(), "token": Opt()}
NEW = {
    "require": MANY,
    "want": MANY,
    "priority": Opt(type=int, low=defaults.MIN_PRIORITY, high=defaults.MAX_PRIORITY, default=0),
    "max-attempts": Opt(
        type=int, low=1, high=defaults.MAX_ATTEMPTS_LIMIT, default=defaults.MAX_ATTEMPTS
    ),
    "timeout": Opt(type=float, low=defaults.MIN_TIMEOUT_S, high=defaults.MAX_TIMEOUT_S),
    "idempotency-key": Opt(),
    "from": Opt(),
    "after": MANY,
    "after-any": MANY,
    "group": Opt(),
    "max-running": Opt(type=int, low=1, high=defaults.MAX_GROUP_RUNNING),
    "array": Opt(),
    "retries": Opt(type=int, low=0, high=defaults.MAX_RETRIES, default=0),
    "retry-delay": Opt(type=float, low=0, high=defaults.MAX_RETRY_DELAY_S, default=0.0),
    "retry-on": MANY,
    "cwd": Opt(),
    "env": MANY,
    "env-pass": MANY,
    "resources": MANY,
    "wait": FLAG,
    "follow": FLAG,
    **SHARED,
}
STATUS = {
    "state": MANY,
    "group": Opt(),
    "all": FLAG,
    "limit": Opt(type=int, low=1, high=defaults.MAX_PAGE, default=defaults.DEFAULT_PAGE),
    "after": Opt(type=int, low=0, default=0),
    **SHARED,
}
KEYWORDS = {"from": "from_", "all": "all_", "json": "as_json"}  # Python names of the options


def _convert(name: str, opt: Opt, text: str) -> Any:
    """A value of `--name` as its type, inside its range.

    Raises:
        InvalidInput: not a number of that type, or out of range.
    """
    if opt.type is str:
        return text
    try:
        value = opt.type(text)
    except ValueError:
        kind = "an integer" if opt.type is int else "a number"
        raise InvalidInput(f"invalid value for --{name}: {text!r} is not {kind}") from None
    low = -float("inf") if opt.low is None else opt.low
    high = float("inf") if opt.high is None else opt.high
    if not low <= value <= high:  # (a NaN is in no range)
        span = f"at least {opt.low:g}" if opt.high is None else f"{opt.low:g} to {opt.high:g}"
        raise InvalidInput(f"invalid value for --{name}: {text} is not in the range {span}")
    return value


def options(table: dict[str, Opt], pairs: list[tuple[str, str | None]]) -> dict[str, Any]:
    """The options' values by name (`max-attempts` -> `max_attempts`), defaults filled in;
    a repeated single-valued option keeps its last value, as typer does.

    Raises:
        InvalidInput: an unknown option, a flag with a value, a bad value.
    """
    found: dict[str, Any] = {
        name: (list(opt.default) if opt.kind == "many" else opt.default)
        for name, opt in table.items()
    }
    for name, value in pairs:
        opt = table.get(name)
        if opt is None:
            raise InvalidInput(f"unknown option --{name}")
        if opt.kind == "flag":
            if value is not None:
                raise InvalidInput(f"--{name} takes no value")
            found[name] = True
        elif value is None:
            raise InvalidInput(f"--{name} needs a value")
        elif opt.kind == "many":
            found[name].append(value)
        else:
            found[name] = _convert(name, opt, value)
    return {KEYWORDS.get(name, name.replace("-", "_")): value for name, value in found.items()}


def _pairs(
    words: list[str], table: dict[str, Opt]
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Modern words (after `_syntax.translate`) -> (option, value) pairs and the others."""
    pairs: list[tuple[str, str | None]] = []
    others: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            others.extend(words[i:])
            break
        if not word.startswith("--"):
            others.append(word)
            continue
        name, eq, inline = word[2:].partition("=")
        opt = table.get(name)
        if eq or opt is None or opt.kind == "flag":
            pairs.append((name, inline if eq else None))
        elif i < len(words):
            pairs.append((name, words[i]))
            i += 1
        else:
            raise InvalidInput(f"{word} needs a value")
    return pairs, others


def run(words: list[str]) -> int:
    """Run `new` or `status` (words as `_syntax.translate` gave them); the exit code.

    Raises:
        KickoffError: whatever the command meets (the caller prints it).
    """
    head, rest = words[0], words[1:]
    try:
        if head == "new":
            parsed = _syntax.parse_new(rest)
            command, given = list(parsed.command), options(NEW, list(parsed.options))
        else:
            pairs, others = _pairs(rest, STATUS)
            if others:
                raise InvalidInput(f"got unexpected extra argument ({others[0]})")
            given = options(STATUS, pairs)
    except InvalidInput as exc:
        exc.message += f" (see `kickoff {head} --help`)"
        raise
    if head == "new":
        return new(command, **given)
    status(**given)
    return 0


def tags(values: list[str] | None, field: str, limit: int = defaults.MAX_TASK_TAGS) -> list[str]:
    """Tags from repeated options, each maybe `a,b;c`; checked before anything is sent."""
    return sorted(check_tags(split_tags(values or ()), field=field, limit=limit))


def new(
    command: list[str],
    *,
    require: list[str] | None = None,
    want: list[str] | None = None,
    priority: int = 0,
    max_attempts: int = defaults.MAX_ATTEMPTS,
    timeout: float | None = None,
    idempotency_key: str | None = None,
    from_: str | None = None,
    after: list[str] | None = None,
    after_any: list[str] | None = None,
    group: str | None = None,
    max_running: int | None = None,
    array: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_on: list[str] | None = None,
    cwd: str | None = None,
    env: list[str] | None = None,
    env_pass: list[str] | None = None,
    resources: list[str] | None = None,
    wait: bool = False,
    follow: bool = False,
    as_json: bool = False,
    server: str | None = None,
    token: str | None = None,
) -> int:
    """Submit one command (or `from_`'s lines, or one per `array` index); print the ids;
    with `wait` or `follow`, the exit code the task ended with (else 0)."""
    if bool(command) == bool(from_):
        raise InvalidInput(
            "give a command (kickoff new [OPTIONS] -- CMD...) or --from FILE, not both"
            if command
            else "no command given: kickoff new [OPTIONS] -- CMD...  (or --from FILE)"
        )
    if array is not None and from_ is not None:
        raise InvalidInput("--array makes one task per index of one command: not with --from")
    if follow and (array is not None or from_ is not None):
        raise InvalidInput("--follow follows one task's output: not with --from or --array")
    base: dict[str, Any] = {
        "require": tags(require, "require"),
        "want": tags(want, "want"),
        "priority": priority,
        "max_attempts": max_attempts,
    }
    if timeout is not None:
        base["timeout_s"] = timeout
    base.update(_where.setting(cwd, env, env_pass))
    if resources:
        from kickoff.resources import parse

        base["resources"] = dict(parse(resources, field="--resources", task=True))
    base.update(_workflow_fields(after, after_any, retries, retry_delay, retry_on))
    indices, cap = _workflow.array_indices(array) if array is not None else ([], None)
    if cap is not None and max_running is None:
        max_running = cap  # `--array 1-240%20`, as Slurm writes it
    if array is not None:
        line = _submit.command_string(command)
        tasks = [
            {"command": line, **base, "array_index": index}
            | ({} if idempotency_key is None else {"idempotency_key": f"{idempotency_key}:{index}"})
            for index in indices
        ]
    elif command:
        key = {} if idempotency_key is None else {"idempotency_key": idempotency_key}
        tasks = [{"command": _submit.command_string(command), **base, **key}]
    else:
        assert from_ is not None
        tasks = _submit.from_lines(from_, base, idempotency_key)
    request = _workflow.group_request(
        group, max_running, always=array is not None or from_ is not None
    )
    with Client(server, token=token) as api:
        ids, label = _submit.submit(api, tasks, group=request)
        if follow:  # the id on stderr, the output on stdout (SPEC §9)
            from kickoff.cli import _follow
            from kickoff.cli._terminal import err

            err.line(f"task {ids[0]}")
            return _follow.show(api, ids[0], follow=True, from_first=True)
        _submit.print_ids(ids, as_json=as_json)
        if label is not None and group is None:
            _submit.tell_group(label, len(ids))
        if not wait:
            return 0
        from kickoff.cli import _wait

        final = _wait.wait_for(api, ids)
    from kickoff.cli import _view_tasks as views

    views.unfinished([final[i] for i in ids], summary=False)
    if command:
        return _wait.exit_code(final[ids[0]])
    return 0 if all(task["state"] == "succeeded" for task in final.values()) else 1


def _workflow_fields(
    after: list[str] | None,
    after_any: list[str] | None,
    retries: int,
    retry_delay: float,
    retry_on: list[str] | None,
) -> dict[str, Any]:
    """The workflow fields of every task of a submission, those given only."""
    fields: dict[str, Any] = {
        "after": _workflow.task_ids(after, "--after"),
        "after_any": _workflow.task_ids(after_any, "--after-any"),
        "retries": retries,
        "retry_delay_s": retry_delay,
        "retry_on": _workflow.retry_codes(retry_on),
    }
    return {name: value for name, value in fields.items() if value}


def states(values: list[str] | None, everything: bool) -> list[str]:
    """The states `status` asks for: the live ones unless told.

    Raises:
        InvalidInput: an unknown state.
    """
    from kickoff.cli._words import STATES

    found = split_tags(values or ())
    unknown = sorted(set(found) - set(STATES) - {"all"})
    if unknown:
        raise InvalidInput(
            f"--state: unknown {', '.join(unknown)}; one of {', '.join(STATES)}, all"
        )
    if everything or "all" in found:
        return ["all"]
    return found or [str(s) for s in LIVE_STATES]


def status(
    *,
    state: list[str] | None = None,
    group: str | None = None,
    all_: bool = False,
    limit: int = defaults.DEFAULT_PAGE,
    after: int = 0,
    as_json: bool = False,
    server: str | None = None,
    token: str | None = None,
) -> None:
    """Print a page of tasks (the live ones unless told) with the counts per state."""
    from kickoff.cli import _view_tasks as views

    asked = states(state, all_)
    with Client(server, token=token) as api:
        page = api.get("/v1/tasks", state=asked, group=group, limit=limit, after=after or None)
    if as_json:
        print_json(page)
    else:
        views.status(page, asked)
