"""Where and with what `kickoff new`'s tasks run: `--cwd` (default: the directory it is run
from), `--env KEY=VALUE` and `--env-pass NAME`, checked before anything is sent.

No I/O but reading the environment and the current directory; sending is `_submit`'s.
"""

from __future__ import annotations

import os

from kickoff import defaults, envvars
from kickoff.errors import InvalidInput, TooLarge

TYPE_CHECKING = False  # typing is for the type checker: its import slows `kickoff new`
if TYPE_CHECKING:
    from typing import Any


def directory(cwd: str | None) -> str:
    """The absolute directory a task records: `cwd` resolved in this one, or this one.

    Raises:
        InvalidInput: this directory is gone (it was deleted under the shell).
    """
    try:
        here = os.getcwd()
    except OSError as exc:
        raise InvalidInput(
            f"the current directory cannot be read ({exc.strerror}); pass --cwd DIR"
        ) from None
    path = os.path.normpath(os.path.join(here, cwd)) if cwd is not None else here
    if len(path.encode("utf-8", "surrogatepass")) > defaults.MAX_CWD_BYTES:
        raise TooLarge(f"--cwd: over {defaults.MAX_CWD_BYTES} bytes")
    return path


def variables(env: list[str] | None, env_pass: list[str] | None) -> dict[str, str]:
    """`--env KEY=VALUE` and `--env-pass NAME` as one object (a later one wins).

    Raises:
        InvalidInput: a malformed pair, a name no task may have, NAME not set here.
        TooLarge: too many variables, or too many bytes of them.
    """
    found: dict[str, str] = {}
    for pair in env or ():
        name, eq, value = pair.partition("=")
        if not eq:
            raise InvalidInput(f"--env {pair[:60]!r}: expected KEY=VALUE")
        found[_named("--env", name)] = value
    for name in env_pass or ():
        passed = os.environ.get(_named("--env-pass", name))
        if passed is None:
            raise InvalidInput(f"--env-pass {name}: {name} is not set in this environment")
        found[name] = passed
    if len(found) > defaults.MAX_ENV_VARS:
        raise TooLarge(f"--env: {len(found)} variables, at most {defaults.MAX_ENV_VARS}")
    total = sum(envvars.size(name, value) for name, value in found.items())
    if total > defaults.MAX_ENV_BYTES:
        raise TooLarge(
            f"--env: {total} bytes of names and values, at most {defaults.MAX_ENV_BYTES}"
        )
    if any("\0" in value for value in found.values()):
        raise InvalidInput("--env: a value holds a NUL character")
    return found


def _named(option: str, name: str) -> str:
    problem = envvars.name_problem(name)
    if problem is not None:
        raise InvalidInput(f"{option}: {problem}")
    return name


def setting(cwd: str | None, env: list[str] | None, env_pass: list[str] | None) -> dict[str, Any]:
    """The `cwd` and `env` fields of every task of one `kickoff new`."""
    found = variables(env, env_pass)
    return {"cwd": directory(cwd), **({"env": found} if found else {})}
