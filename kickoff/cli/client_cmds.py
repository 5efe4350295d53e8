"""The client commands: new, status (list), info, cancel, wait, stats, workers, tags.

Each is a thin layer over one or two HTTP calls (docs/api.md); `--json` prints the server's
answer as it is (docs/cli.md documents the fields); `_view_tasks` and `_view_workers`
draw the human form.
`new` and `status` are run by `_quick` (without typer, for speed): their declarations here
give typer their `--help`.

No HTTP of their own (client.py) and no rules (the server's).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from kickoff import defaults
from kickoff.cli import _quick, _wait
from kickoff.cli import _view_tasks as views
from kickoff.cli import _view_workers as worker_views
from kickoff.cli._options import JsonOpt, ServerOpt, TokenOpt, client
from kickoff.cli._terminal import print_json
from kickoff.client import Client
from kickoff.errors import ERRORS_BY_CODE, IllegalTransition, InvalidInput, KickoffError, NotFound

TagsOpt = list[str] | None
GroupOpt = Annotated[
    str | None,
    typer.Option(
        "--group", metavar="NAME", help="Only the tasks of group NAME.", show_default=False
    ),
]


def new(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="CMD...",
            help="The command. Put it after -- if it has words of its own that start with a dash.",
            show_default=False,
        ),
    ] = None,
    require: Annotated[
        TagsOpt,
        typer.Option(
            "--require",
            metavar="TAG",
            help="Tag the worker must have (--require cpu gpu, or cpu,gpu).",
            show_default=False,
        ),
    ] = None,
    want: Annotated[
        TagsOpt,
        typer.Option(
            "--want",
            metavar="TAG",
            help="Tag the worker should preferably have (--want gpu fast).",
            show_default=False,
        ),
    ] = None,
    priority: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=defaults.MIN_PRIORITY,
            max=defaults.MAX_PRIORITY,
            help="Higher runs first.",
        ),
    ] = 0,
    max_attempts: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            max=defaults.MAX_ATTEMPTS_LIMIT,
            help="Starts allowed if workers are lost.",
        ),
    ] = defaults.MAX_ATTEMPTS,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            min=defaults.MIN_TIMEOUT_S,
            max=defaults.MAX_TIMEOUT_S,
            help="Kill and fail it after SECONDS.",
            show_default=False,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Submitting the same key again creates no second task.",
            show_default=False,
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="Read one command per line from FILE (- is stdin); the tasks are a group.",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        TagsOpt,
        typer.Option(
            "--after",
            metavar="ID",
            help="Run only after these tasks succeeded (--after 12 13); waits till then.",
            show_default=False,
        ),
    ] = None,
    after_any: Annotated[
        TagsOpt,
        typer.Option(
            "--after-any",
            metavar="ID",
            help="Run only after these tasks ended, in any way.",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Join (or start) the group NAME (status/stats/wait/cancel --group NAME).",
            show_default=False,
        ),
    ] = None,
    max_running: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            min=1,
            max=defaults.MAX_GROUP_RUNNING,
            help="At most N tasks of the (new) group run at once.",
            show_default=False,
        ),
    ] = None,
    array: Annotated[
        str | None,
        typer.Option(
            metavar="SPEC",
            help="One task per index (1-240, 0-99:2, 1,5,7; 1-240%20 caps it at 20 at once), "
            "each with KICKOFF_ARRAY_INDEX.",
            show_default=False,
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            max=defaults.MAX_RETRIES,
            help="Start it again up to N times after a failure (exit code or timeout).",
        ),
    ] = 0,
    retry_delay: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            min=0,
            max=defaults.MAX_RETRY_DELAY_S,
            help="Wait before a retry, doubling each time.",
        ),
    ] = 0.0,
    retry_on: Annotated[
        TagsOpt,
        typer.Option(
            "--retry-on",
            metavar="CODE",
            help="Retry only these exit codes (and `timeout`): --retry-on 75 timeout.",
            show_default=False,
        ),
    ] = None,
    cwd: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="Run it in DIR (default: this directory); a worker without it uses a "
            "fresh scratch directory and says so.",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="KEY=VALUE",
            help="Set KEY in its environment (repeat for more).",
            show_default=False,
        ),
    ] = None,
    env_pass: Annotated[
        list[str] | None,
        typer.Option(
            "--env-pass",
            metavar="NAME",
            help="Pass on this shell's NAME (its value now is recorded; repeat for more).",
            show_default=False,
        ),
    ] = None,
    resources: Annotated[
        list[str] | None,
        typer.Option(
            "--resources",
            metavar="NAME=AMOUNT",
            help="Run it only where this much is free, held while it runs (gpu=2,mem=16G; "
            "K M G T are binary). Its GPUs are in CUDA_VISIBLE_DEVICES.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Block until done; exit with the task's exit code.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Print its output as it runs (the id goes to stderr); exit with its exit code.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a command; print its task id.

    The command is the words before the first option, or everything after --. Before --,
    a word that starts with a dash is one of these options, or refused: a command with
    words of its own that start with a dash goes after --. A tag option, --after,
    --after-any and --retry-on take every word up to the next option (--require cpu gpu).

    \b
      kickoff new ./run.sh arg1 -require cpu -want gpu
      kickoff new --require cpu --priority 5 -- ls -la /data
      id=$(kickoff new -- make test) && kickoff wait $id
      kickoff new --from commands.txt --require cpu     (one command per line)
      kickoff new --after $id -- ./evaluate.sh
      kickoff new --array 1-240 --max-running 20 -- ./render.sh
      kickoff new --retries 2 --retry-delay 10 -- ./download.sh
      kickoff new --env EPOCHS=3 --env-pass WANDB_API_KEY --follow -- python3 train.py
      kickoff new --resources gpu=2,mem=16G -- python3 train.py
    """
    code = _quick.new(
        command or [],
        require=require,
        want=want,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        idempotency_key=idempotency_key,
        from_=from_,
        after=after,
        after_any=after_any,
        group=group,
        max_running=max_running,
        array=array,
        retries=retries,
        retry_delay=retry_delay,
        retry_on=retry_on,
        cwd=cwd,
        env=env,
        env_pass=env_pass,
        resources=resources,
        wait=wait,
        follow=follow,
        as_json=as_json,
        server=server,
        token=token,
    )
    if code:
        raise typer.Exit(code)


def status(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="STATE",
            help="Only these states (repeat, or pending,failed; all = every state).",
            show_default=False,
        ),
    ] = None,
    group: GroupOpt = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Tasks in every state, finished ones too.")
    ] = False,
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=defaults.MAX_PAGE, help="Show at most N tasks.")
    ] = defaults.DEFAULT_PAGE,
    after: Annotated[
        int,
        typer.Option(
            metavar="ID", min=0, help="Start after task id ID (next page).", show_default=False
        ),
    ] = 0,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List pending, waiting and running tasks, with counts (alias: list).

    Pages through any number of tasks: --limit N per page, --after ID for the next.

    \b
      kickoff status
      kickoff status --state failed --limit 20
      kickoff status --all --after 1000     (the page after task 1000)
      kickoff status --group shot12 --all
    """
    _quick.status(
        state=state,
        group=group,
        all_=all_,
        limit=limit,
        after=after,
        as_json=as_json,
        server=server,
        token=token,
    )


def info(
    task_id: Annotated[int, typer.Argument(metavar="ID", help="The task id.", show_default=False)],
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show everything about one task.

    State, command, tags, attempts, worker, exit code, times, output tail, recent events;
    for a pending or waiting task, why it waits in one line (all of it: kickoff why ID).

    \b
      kickoff info 42
      kickoff info 42 --json | jq .exit_code
    """
    with client(server, token) as api:
        task = api.get(f"/v1/tasks/{task_id}")
        events = api.get(f"/v1/tasks/{task_id}/events", heartbeats=0)["events"]
        if task["state"] in ("pending", "waiting"):  # `kickoff why`'s one line
            task["why"] = api.get(f"/v1/tasks/{task_id}/why")["summary"]
    if as_json:
        print_json({**task, "events": events})
    else:
        views.info(task, events)


def cancel(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="ID...", help="Task ids.", show_default=False)
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", metavar="NAME", help="Every live task of group NAME.", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel tasks, or a whole group.

    A pending or waiting task is cancelled at once, a running one when its worker has
    stopped it; tasks waiting on a cancelled one (--after) are cancelled too.

    \b
      kickoff cancel 42
      kickoff cancel 42 43 44
      kickoff cancel --group shot12
    """
    if bool(ids) == bool(group):
        raise InvalidInput("give task ids or --group NAME (not both)")
    if group is not None:
        with client(server, token) as api:
            answer = api.post(f"/v1/groups/{quote(group, safe='')}/cancel", {})
        if as_json:
            print_json(answer)
        else:
            views.group_cancelled(answer)
        return
    assert ids is not None
    results: list[dict[str, Any]] = []
    finished: dict[int, str] = {}
    with client(server, token) as api:
        for start in range(0, len(ids), defaults.MAX_BATCH):
            chunk = ids[start : start + defaults.MAX_BATCH]
            results.extend(api.post("/v1/tasks/cancel", {"ids": chunk})["results"])
        late = [r["id"] for r in results if r.get("error", {}).get("code") == "illegal_transition"]
        if late and not as_json:
            finished = {i: task["state"] for i, task in _wait.fetch(api, late).items()}
    if as_json:
        print_json(results)
    else:
        views.cancelled(results, finished)
    failures = [r for r in results if "error" in r]
    if failures:
        first = ERRORS_BY_CODE.get(failures[0]["error"]["code"], KickoffError)
        raise typer.Exit(first.exit_code)


def wait(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="ID...", help="Task ids.", show_default=False)
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="NAME",
            help="Every task of group NAME (a progress bar on a terminal).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", min=0, help="Give up after SECONDS (exit 1).", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Wait until tasks (or a group) finish; exit 0 iff all succeeded.

    Shows progress on stderr; exits 1 if any task failed or was cancelled.

    \b
      kickoff wait 42
      kickoff wait $(kickoff new --from jobs.txt) --timeout 3600
      kickoff wait --group shot12
    """
    if bool(ids) == bool(group):
        raise InvalidInput("give task ids or --group NAME (not both)")
    if group is not None:
        with client(server, token) as api:
            summary = _wait.wait_for_group(api, group, timeout_s=timeout)
        if as_json:
            print_json(summary)
        else:
            views.group_summary(summary)
        if summary["counts"].get("succeeded", 0) != summary["total"]:
            raise typer.Exit(1)
        return
    assert ids is not None
    with client(server, token) as api:
        final = _wait.wait_for(api, ids, timeout_s=timeout)
    tasks = [final[i] for i in dict.fromkeys(ids)]
    if as_json:
        print_json(tasks)
    else:
        views.unfinished(tasks, summary=True)
    if any(task["state"] != "succeeded" for task in tasks):
        raise typer.Exit(1)


def stats(
    group: GroupOpt = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show counts per state, workers and throughput (of one group: --group NAME).

    \b
      kickoff stats
      kickoff stats --json | jq .pending
      kickoff stats --group shot12
    """
    with client(server, token) as api:
        data = api.get("/v1/stats", group=group)
    if as_json:
        print_json(data)
    else:
        views.stats(data)


def workers(
    all_: Annotated[bool, typer.Option("--all", help="Include stopped and lost workers.")] = False,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List workers: tags, slots, running tasks.

    \b
      kickoff workers
      kickoff workers --all --json
    """
    with client(server, token) as api:
        found: list[dict[str, Any]] = api.get("/v1/workers", all=1 if all_ else None)["workers"]
    if as_json:
        print_json(found)
    else:
        worker_views.workers(found, everything=all_)


def tags(
    worker: Annotated[
        str, typer.Argument(metavar="WORKER", help="Worker name or id.", show_default=False)
    ],
    add: Annotated[
        TagsOpt, typer.Option("--add", metavar="TAG", help="Tags to add.", show_default=False)
    ] = None,
    remove: Annotated[
        TagsOpt, typer.Option("--remove", metavar="TAG", help="Tags to remove.", show_default=False)
    ] = None,
    set_: Annotated[
        TagsOpt,
        typer.Option(
            "--set",
            metavar="TAG",
            help="Replace all tags (--set '' clears them).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show or change a worker's tags.

    A change takes effect on the worker's next claim. Without options, print the tags.

    \b
      kickoff tags gpu-box-1 --add gpu --remove cpu
      kickoff tags gpu-box-1 -set cpu gpu big-mem
    """
    limit = defaults.MAX_WORKER_TAGS
    body: dict[str, Any] = {
        "add": _quick.tags(add, "add", limit),
        "remove": _quick.tags(remove, "remove", limit),
    }
    if set_ is not None:
        body["set"] = _quick.tags(set_, "set", limit)
    with client(server, token) as api:
        if add is None and remove is None and set_ is None:
            found = api.get(f"/v1/workers/{quote(worker, safe='')}")
            result = {"worker_id": found["id"], "tags": found["tags"]}
        else:
            result = _change_tags(api, worker, body)
    if as_json:
        print_json(result)
    else:
        worker_views.tags(worker, result)


def _change_tags(api: Client, worker: str, body: dict[str, Any]) -> Any:
    """POST the change; a worker that is not alive is named with its state.

    Raises:
        IllegalTransition: the worker is stopped or lost (its tags are read-only).
        NotFound: no worker ever had that name or id.
    """
    path = f"/v1/workers/{quote(worker, safe='')}"
    try:
        return api.post(f"{path}/tags", body)
    except (NotFound, IllegalTransition) as exc:
        try:
            found = api.get(path)
        except NotFound:
            raise exc from None
        if found["state"] == "alive":
            raise
        raise IllegalTransition(
            f"worker {found['name']} ({found['id']}) is {found['state']}: only a live worker's "
            "tags can change (they apply from its next claim); `kickoff workers --all` lists "
            "them all"
        ) from None


LIST_HELP = """List pending and running tasks, with counts (an alias of status).

\b
  kickoff list
  kickoff list --state failed
"""


def register(app: typer.Typer) -> None:
    """Add the client commands to the app."""
    app.command("new")(new)
    app.command("status")(status)
    app.command("list", hidden=True, help=LIST_HELP)(status)
    app.command("info")(info)
    app.command("cancel")(cancel)
    app.command("wait")(wait)
    app.command("stats")(stats)
    app.command("workers")(workers)
    app.command("tags")(tags)
