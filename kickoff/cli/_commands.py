"""Which commands there are, in which module each lives, and `kickoff --help` (shown
without importing typer: tests/test_docs.py checks this table against the commands).

A command's module is imported only when that command runs (`_app.app_for`).
"""

from __future__ import annotations

# name -> (module under kickoff.cli, the first line of its help; None: hidden)
COMMANDS: dict[str, tuple[str, str | None]] = {
    "new": ("client_cmds", "Submit a command; print its task id."),
    "status": (
        "client_cmds",
        "List pending, waiting and running tasks, with counts (alias: list).",
    ),
    "list": ("client_cmds", None),
    "info": ("client_cmds", "Show everything about one task."),
    "cancel": ("client_cmds", "Cancel tasks, or a whole group."),
    "wait": ("client_cmds", "Wait until tasks (or a group) finish; exit 0 iff all succeeded."),
    "stats": (
        "client_cmds",
        "Show counts per state, workers and throughput (of one group: --group NAME).",
    ),
    "workers": ("client_cmds", "List workers: tags, slots, running tasks."),
    "tags": ("client_cmds", "Show or change a worker's tags."),
    "server": ("server_cmds", "Run the kickoff server (no configuration needed)."),
    "up": (
        "server_cmds",
        "Run a server and a local worker in one command: kickoff on one machine.",
    ),
    "worker": ("worker_cmd", "Run tasks whose required tags this worker has, until Ctrl-C."),
    "logs": ("logs_cmd", "Print a task's output from any machine; --follow it live."),
    "why": ("why_cmd", "Explain why a task waits, or where it ran and how each attempt ended."),
    "history": ("log_cmds", "Show a task's full story, event by event."),
    "events": ("log_cmds", "Query the event log, or follow it live."),
    "replay": ("log_cmds", "Show the state as it was at a point in the log (offline, read-only)."),
    "verify": ("log_cmds", "Check the log's integrity and the projections (offline, read-only)."),
    "compact": (
        "log_cmds",
        "Archive old heartbeats out of the log (retention); verify stays green.",
    ),
    "migrate": ("log_cmds", "Copy a log to another database: SQLite to PostgreSQL, or back."),
    "dashboard": (
        "dashboard_cmd",
        "Print a login link for the web dashboard (it works once, within a minute).",
    ),
    "token": ("token_cmd", "Print the server's access token (or make a new one with --rotate)."),
    "version": ("version_cmd", "Print kickoff's version (also: kickoff --version)."),
    "projections": (
        "log_cmds",
        "Rebuild the SQL projections (tasks, workers, task_counts, groups) from the log.",
    ),
}

QUICK = ("new", "status", "list")  # run by _quick, without typer

ABOUT = """\
Usage: kickoff [OPTIONS] COMMAND [ARGS]...

  kickoff: a task scheduler for heterogeneous compute clusters.

  Start a server, add workers with resource tags, submit shell commands that
  require and want tags.

    kickoff server
    kickoff worker -have cpu gpu -server HOST
    kickoff new ./train.sh -require gpu -want big-mem -server HOST
    kickoff status | info ID | cancel ID | wait ID | history ID

  Options take one dash or two (-have, --have). Before --, a word that starts
  with a dash is an option of kickoff's: a command with words of its own that
  start with a dash goes after --:

    kickoff new --require cpu -- ls -la

  Exit codes: 0 ok, 1 failed, 2 usage, 3 server unreachable, 4 not found,
  5 not authorized. `kickoff COMMAND --help` shows a command's options.

Options:
  --version   Print the version and exit.
  -h, --help  Show this message and exit.
"""
WIDTH = 80


def _wrapped(name: str, summary: str, indent: int) -> list[str]:
    lines, line = [], f"  {name:<{indent - 2}}"
    for word in summary.split():
        if len(line) + 1 + len(word) > WIDTH - 1 and line.strip() != name:
            lines.append(line)
            line = " " * indent + word
        else:
            line += word if line.endswith(" ") else " " + word
    return [*lines, line]


def help_text() -> str:
    """`kickoff --help`: what kickoff is, and one line per visible command."""
    shown = {name: summary for name, (_, summary) in COMMANDS.items() if summary}
    indent = max(map(len, shown)) + 4
    lines = [line for name, summary in shown.items() for line in _wrapped(name, summary, indent)]
    return ABOUT + "\nCommands:\n" + "\n".join(lines) + "\n"


def module_of(name: str) -> str | None:
    entry = COMMANDS.get(name)
    return None if entry is None else entry[0]
