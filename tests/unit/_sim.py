"""A scripted scheduler run driven through decide + apply, for property tests.

A run is a list of operation tuples, `(method name, *args)`. `Sim.run` interprets them against a
`State` exactly as `service.py` would (decide, then apply each event with the next seq), and
at every claim checks the matcher against `reference_best`, a linear scan by SPEC §1's rule
that also leaves out waiting tasks and the tasks of a group at its `max_running` cap, and
applies SPEC §10's resources by the rule state/matcher.py documents (the best-ranked task
that fits the free amounts; a task passed over RESERVE_AFTER_PASSES times keeps its
resources), with free amounts and passes counted here from what the claims held. After
every operation it checks the workflow rules (SPEC §12) against what it saw happen: a task
waits exactly while a dependency is live, runs only after its `after` ones succeeded, and
is cancelled (naming the dependency) when one of them did not.
Operations are generated either by hypothesis (`operations()`) or by a seeded
`random.Random` (`random_operations`), so store tests can reuse the same runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import strategies as st

from kickoff.defaults import RESERVE_AFTER_PASSES
from kickoff.errors import Conflict, IllegalTransition, StaleAttempt
from kickoff.events import model as ev
from kickoff.state import decide
from kickoff.state.fold import State, apply, worker_number
from kickoff.state.task_state import TaskState
from kickoff.store.chain import Recorded

TAGS = ("a", "b", "c", "d", "e")
Amounts = tuple[tuple[str, int], ...]
TASK_RESOURCES: tuple[Amounts, ...] = (
    (("gpu", 1),),
    (("gpu", 2),),
    (("gpu", 3),),
    (("mem", 2),),
    (("gpu", 1), ("mem", 3)),
    (("gpu", 4), ("mem", 1)),
)
WORKER_RESOURCES: tuple[Amounts, ...] = (
    (("gpu", 4),),
    (("gpu", 2), ("mem", 4)),
    (("gpu", 4), ("mem", 8)),
    (("gpu", 0), ("mem", 3)),
)
PRIORITIES = range(-2, 3)
KEYS = ("k1", "k2", "k3")
START = datetime(2026, 1, 1, tzinfo=UTC)
FAR = timedelta(hours=10)  # "far in the future" for decide.expire
TIMEOUT_S = 3600.0  # lease timeout; FAR is well past it

Op = tuple[Any, ...]


@dataclass(frozen=True)
class Spec:
    """What the test knows about a submitted task, independently of the matcher."""

    require: frozenset[str]
    want: frozenset[str]
    priority: int
    after: tuple[int, ...] = ()
    after_any: tuple[int, ...] = ()
    group: int | None = None  # group id
    retries: int = 0
    resources: Amounts = ()


BUSY = (TaskState.RUNNING, TaskState.CANCELLING)


def want_score(want: frozenset[str], tags: frozenset[str]) -> Fraction:
    return Fraction(len(want & tags), len(want)) if want else Fraction(0)


def fits(request: Amounts, free: dict[str, int]) -> bool:
    return all(free.get(name, 0) >= amount for name, amount in request)


def reference_best(
    state: State,
    specs: dict[int, Spec],
    tags: frozenset[str],
    caps: dict[int, int | None],
    totals: Amounts = (),
    free: dict[str, int] | None = None,
    passes: dict[int, int] | None = None,
) -> tuple[int | None, int | None]:
    """SPEC §1 by brute force: scan every pending task and apply the rule literally, leaving
    out the tasks of a group with as many running tasks as its cap (counted here) and those
    that ask for more than the worker's `totals`; then the first in that order that fits
    the `free` amounts, unless the first that does not (the blocked one) was passed
    RESERVE_AFTER_PASSES times: then only tasks asking for none of its resources. Returns
    the task and the blocked one it goes ahead of."""
    running: dict[int, int] = {}
    for task in state.tasks.values():
        group = specs[task.id].group
        if group is not None and task.state in BUSY:
            running[group] = running.get(group, 0) + 1
    ranked: list[tuple[int, Fraction, int]] = []
    for task in state.tasks.values():
        if task.state is not TaskState.PENDING:
            continue
        spec = specs[task.id]
        if not spec.require <= tags or not fits(spec.resources, dict(totals)):
            continue
        cap = caps.get(spec.group) if spec.group is not None else None
        if cap is not None and running.get(spec.group, 0) >= cap:  # type: ignore[arg-type]
            continue
        ranked.append((-spec.priority, -want_score(spec.want, tags), task.id))
    free = free or {}
    blocked: int | None = None
    reserved: set[str] = set()
    for *_, task_id in sorted(ranked):
        request = specs[task_id].resources
        names = {name for name, _ in request}
        if fits(request, free) and not names & reserved:
            return task_id, blocked
        if blocked is None and not fits(request, free):
            blocked = task_id
            if (passes or {}).get(task_id, 0) >= RESERVE_AFTER_PASSES:
                reserved = names
    return None, None


@dataclass(repr=False)
class Sim:
    """One run: the state, the events it recorded, and what the test knows."""

    state: State = field(default_factory=State)
    records: list[Recorded] = field(default_factory=list)
    specs: dict[int, Spec] = field(default_factory=dict)
    now: datetime = START
    stale: list[tuple[int, str, int]] = field(default_factory=list)  # lost (task, worker, attempt)
    claims: int = 0
    matched: int = 0  # claims that found a task
    keyed: dict[str, decide.NewTask] = field(default_factory=dict)  # key -> its first request
    caps: dict[int, int | None] = field(default_factory=dict)  # group id -> max_running
    outcomes: dict[int, str] = field(default_factory=dict)  # finished task -> its end
    failures: dict[int, int] = field(default_factory=dict)  # task -> failed attempts so far
    released: int = 0  # tasks that waited and were released (for non-vacuity)
    totals: dict[str, Amounts] = field(default_factory=dict)  # worker -> declared amounts
    held: dict[int, tuple[str, Amounts, tuple[int, ...]]] = field(default_factory=dict)
    """running task -> (worker, amounts, gpu ids), from the claims seen"""
    passes: dict[int, int] = field(default_factory=dict)  # pending task -> claims ahead of it
    overtaken: dict[int, int] = field(default_factory=dict)
    """pending task -> claims that went ahead of it taking some of what it asks for"""
    fitted: int = 0  # claims of tasks with resources (for non-vacuity)
    reserved: int = 0  # claims made while a task was kept resources for
    # -- plumbing --------------------------------------------------------------

    def commit(self, events: list[ev.Event]) -> None:
        """What service/recording.py does, minus the disk: seq, time, apply."""
        for event in events:
            seq = self.state.last_seq + 1
            self.records.append(Recorded(seq, self.now, event))
            self._saw(event)
            apply(self.state, event, seq=seq, at=self.now)

    def _saw(self, event: ev.Event) -> None:
        """Keep each task's end, what runs where holding what, and the passes, as the log
        tells them (not from the State)."""
        match event:
            case ev.TaskClaimed():
                self.held[event.task_id] = (event.worker_id, event.resources, event.gpu_ids)
                self.passes.pop(event.task_id, None)
                self.overtaken.pop(event.task_id, None)
                if event.ahead_of is not None:
                    self.passes[event.ahead_of] = self.passes.get(event.ahead_of, 0) + 1
                    self.check_bound(event.ahead_of, event.resources)
            case ev.TaskLeaseExpired():
                self.held.pop(event.task_id, None)
            case ev.TaskRequeued() | ev.TaskCompleted() | ev.TaskFailed() | ev.TaskCancelled():
                self.held.pop(event.task_id, None)
                if not isinstance(event, ev.TaskRequeued):
                    self.passes.pop(event.task_id, None)
                    self.overtaken.pop(event.task_id, None)
            case ev.WorkerLost() | ev.WorkerStopped():
                self.held = {t: h for t, h in self.held.items() if h[0] != event.worker_id}
        match event:
            case ev.TaskCompleted(retry_in_s=None):
                ok = event.exit_code == 0 and not event.timed_out
                self.outcomes[event.task_id] = "succeeded" if ok else "failed"
            case ev.TaskCompleted():
                assert event.exit_code != 0 or event.timed_out, "a success was retried"
                self.failures[event.task_id] = self.failures.get(event.task_id, 0) + 1
                assert self.failures[event.task_id] <= self.specs[event.task_id].retries
            case ev.TaskFailed():
                self.outcomes[event.task_id] = "failed"
            case ev.TaskCancelled():
                self.outcomes[event.task_id] = "cancelled"
                if event.reason is not None:
                    self.check_dependency_cancel(event.task_id, event.reason)
            case ev.TaskReleased():
                self.released += 1

    def check_dependency_cancel(self, task_id: int, reason: str) -> None:
        """A cancel with a reason names an `after` dependency that did not succeed."""
        spec = self.specs[task_id]
        words = reason.split()
        assert words[0] == "dependency", reason
        named = int(words[1])
        assert named in spec.after, reason
        assert self.outcomes.get(named) in ("failed", "cancelled"), reason
        assert reason.endswith("failed" if self.outcomes[named] == "failed" else "cancelled")

    def check_workflows(self) -> None:
        """Every live task with dependencies is where SPEC §12 puts it."""
        for task in self.state.tasks.values():
            spec = self.specs[task.id]
            deps = (*spec.after, *spec.after_any)
            if not deps:
                continue
            live = [d for d in deps if d not in self.outcomes]
            if task.state is TaskState.WAITING and task.id in self.state.waiting:
                assert live, f"task {task.id} waits for nothing"
                assert self.state.waiting_for(task.id) == sorted(set(live))
                continue
            assert not live, f"task {task.id} is {task.state} while {live} are live"
            assert all(self.outcomes[d] == "succeeded" for d in spec.after), task.id

    def decide(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a decide function and check it changed nothing (decide is pure)."""
        before = self.state.snapshot()
        out = fn(self.state, *args, **kwargs)
        assert self.state.snapshot() == before, f"{fn.__name__} changed the state"
        return out

    def worker_ids(self) -> list[str]:
        return sorted(self.state.workers, key=worker_number)

    def running(self) -> list[int]:
        return sorted(
            t.id
            for t in self.state.tasks.values()
            if t.state in (TaskState.RUNNING, TaskState.CANCELLING)
        )

    def pick(self, items: list[Any], index: int) -> Any:
        return items[index % len(items)] if items else None

    # -- operations ------------------------------------------------------------

    def submit(
        self,
        require: frozenset[str],
        want: frozenset[str],
        priority: int,
        attempts: int,
        key: str | None,
        resources: Amounts = (),
    ) -> int:
        new = decide.NewTask(
            command=f"echo {len(self.specs)}",
            require=require,
            want=want,
            priority=priority,
            max_attempts=attempts,
            idempotency_key=key,
            resources=resources,
        )
        known = self.state.idempotency.get(key) if key is not None else None
        if key is not None and known is not None:
            first = self.keyed[key]
            if new != first:
                with pytest.raises(Conflict, match=repr(key)):
                    self.decide(decide.submit, [new])
                new = first  # and the retry of the first request gets its id
        events, ids = self.decide(decide.submit, [new])
        if known is not None:
            assert events == [] and ids == [known[0]], "a known idempotency key made a new task"
        else:
            assert len(events) == 1 and ids == [self.state.next_task_id]
            self.specs[ids[0]] = Spec(require, want, priority, resources=resources)
            if key is not None:
                self.keyed[key] = new
        self.commit(events)
        return int(ids[0])

    def register(self, tags: frozenset[str], slots: int, resources: Amounts = ()) -> str:
        events = self.decide(decide.register, name="w", tags=tags, slots=slots, resources=resources)
        self.commit(events)
        self.totals[events[0].worker_id] = resources
        return str(events[0].worker_id)

    def check_bound(self, blocked: int, took: Amounts) -> None:
        """The starvation bound: at most RESERVE_AFTER_PASSES claims go ahead of a blocked
        task taking any resource it asks for (then the workers it fits keep them)."""
        wanted = {name for name, _ in self.specs[blocked].resources}
        if wanted & {name for name, _ in took}:
            self.overtaken[blocked] = seen = self.overtaken.get(blocked, 0) + 1
            assert seen <= RESERVE_AFTER_PASSES, f"task {blocked} was overtaken {seen} times"

    def free(self, worker_id: str) -> dict[str, int]:
        """The worker's declared amounts minus what the claims seen hold there."""
        free = dict(self.totals[worker_id])
        for on, amounts, _ in self.held.values():
            if on == worker_id:
                for name, amount in amounts:
                    free[name] -= amount
        return free

    def check_holdings(self) -> None:
        """What the State says each worker holds is what the claims seen hold; the devices
        of running tasks on one worker are disjoint, of that worker, as many as asked."""
        for worker_id, worker in self.state.workers.items():
            free = self.free(worker_id)
            assert worker.free == free, worker_id
            ids = [g for on, _, gpus in self.held.values() if on == worker_id for g in gpus]
            assert len(ids) == len(set(ids)), f"{worker_id} hands a device out twice: {ids}"
            assert set(ids) <= set(worker.gpu_ids)
        for task_id, (_, amounts, gpus) in self.held.items():
            assert len(gpus) == dict(amounts).get("gpu", 0), task_id
            assert amounts == self.specs[task_id].resources

    def claim(self, index: int) -> int | None:
        worker_id = self.pick(self.worker_ids(), index)
        if worker_id is None:
            return None
        worker = self.state.workers[worker_id]
        free = self.free(worker_id)
        expected, ahead_of = reference_best(
            self.state,
            self.specs,
            worker.tags,
            self.caps,
            self.totals[worker_id],
            free,
            self.passes,
        )
        events = self.decide(decide.claim, worker_id)
        self.claims += 1
        if len(worker.running) >= worker.slots:
            assert events == []
            return None
        got = events[0].task_id if events else None
        assert got == expected, (
            f"worker tags {sorted(worker.tags)}, free {free}: matcher chose {got}, the rule "
            f"says {expected}; pending: {self.pending_table()}"
        )
        if events:
            self.matched += 1
            claimed = events[0]
            assert claimed.attempt == self.state.tasks[got].attempt + 1
            assert claimed.ahead_of == ahead_of, (claimed, ahead_of, self.passes)
            assert claimed.resources == self.specs[got].resources
            self.fitted += bool(claimed.resources)
            blocked = ahead_of is not None and self.passes.get(ahead_of, 0)
            self.reserved += blocked is not False and blocked >= RESERVE_AFTER_PASSES
        self.commit(events)
        self.check_caps()
        self.check_holdings()
        return got

    def check_caps(self) -> None:
        running: dict[int, int] = {}
        for task in self.state.tasks.values():
            group = self.specs[task.id].group
            if group is not None and task.state in BUSY:
                running[group] = running.get(group, 0) + 1
        for group, n in running.items():
            cap = self.caps[group]
            assert cap is None or n <= cap, f"group {group}: {n} running, cap {cap}"

    def flow(
        self,
        require: frozenset[str],
        priority: int,
        after: tuple[int, ...],
        after_any: tuple[int, ...],
        group: int | None,
        cap: int | None,
        retries: int,
        resources: Amounts = (),
    ) -> int | None:
        """A task with dependencies (indexes into the tasks so far), a group (an index into
        the groups so far; None: none; -1: a new one with `cap`), retries and resources."""
        known = sorted(self.specs)
        if not known and (after or after_any):
            return None
        deps = tuple(dict.fromkeys(known[i % len(known)] for i in after))
        any_deps = tuple(dict.fromkeys(known[i % len(known)] for i in after_any))
        request = None
        if group == -1 or (group is not None and not self.caps):
            request = decide.GroupRequest(name=f"n{len(self.caps)}", max_running=cap)
        elif group is not None:
            groups = sorted(self.caps)
            request = decide.GroupRequest(name=f"g{groups[group % len(groups)]}")
        new = decide.NewTask(
            command="flow",
            require=require,
            priority=priority,
            after=deps,
            after_any=any_deps,
            retries=retries,
            resources=resources,
        )
        events, (task_id,) = self.decide(decide.submit, [new], group=request)
        group_id = next((e.group_id for e in events if isinstance(e, ev.TaskSubmitted)), None)
        for e in events:
            if isinstance(e, ev.GroupCreated):
                self.caps[e.group_id] = e.max_running
        self.specs[task_id] = Spec(
            require, frozenset(), priority, deps, any_deps, group_id, retries, resources
        )
        self.commit(events)
        return int(task_id)

    def retry_due(self, seconds: int) -> None:
        """Time passes; the retries due by then start again."""
        self.now += timedelta(seconds=seconds)
        due = self.decide(decide.retries_due, self.now)
        for event in due:
            assert self.state.retry_due[event.task_id] <= self.now
        self.commit(due)
        assert all(due_at > self.now for due_at in self.state.retry_due.values())

    def pending_table(self) -> list[tuple[int, list[str], list[str], int]]:
        return [
            (i, sorted(s.require), sorted(s.want), s.priority)
            for i, s in self.specs.items()
            if i in self.state.tasks and self.state.tasks[i].state is TaskState.PENDING
        ]

    def complete(self, index: int, exit_code: int, cancelled: bool) -> None:
        task_id = self.pick(self.running(), index)
        if task_id is None:
            return
        task = self.state.tasks[task_id]
        assert task.worker_id is not None
        report = decide.Completion(
            task_id=task_id,
            worker_id=task.worker_id,
            attempt=task.attempt,
            exit_code=exit_code,
            duration_s=0.5,
            cancelled=cancelled,
        )
        self.commit(self.decide(decide.complete, report))

    def cancel(self, index: int) -> None:
        if not self.specs:
            return
        task_id = self.pick(sorted(self.specs), index)
        task = self.state.tasks.get(task_id)
        if task is None:
            try:
                self.decide(decide.cancel, task_id)
            except IllegalTransition:
                return
            raise AssertionError(f"cancel of finished task {task_id} was allowed")
        events = self.decide(decide.cancel, task_id)
        if task.state is TaskState.CANCELLING:
            assert events == []
        self.commit(events)

    def lose(self, index: int | None) -> None:
        """decide.expire far in the future; all workers but the chosen one heartbeat first."""
        target = self.pick(self.worker_ids(), index) if index is not None else None
        if index is not None and target is None:
            return
        running = [(t.id, t.attempt, t.worker_id) for t in self.state.tasks.values()]
        self.now += FAR
        for worker_id in self.worker_ids():
            if index is not None and worker_id != target:
                pairs = [(t, a) for t, a, w in running if w == worker_id]
                events, _ = self.decide(decide.heartbeat, worker_id, pairs, now=self.now)
                self.commit(events)
        events = self.decide(decide.expire, self.now, timeout_s=TIMEOUT_S)
        lost = {e.worker_id for e in events if isinstance(e, ev.WorkerLost)}
        assert lost == ({target} if target is not None else set(self.state.workers))
        self.stale.extend((t, w, a) for t, a, w in running if w is not None and w in lost)
        self.commit(events)

    def stop(self, index: int) -> None:
        worker_id = self.pick(self.worker_ids(), index)
        if worker_id is not None:
            self.commit(self.decide(decide.stop_worker, worker_id))

    def retag(self, index: int, tags: frozenset[str]) -> None:
        worker_id = self.pick(self.worker_ids(), index)
        if worker_id is not None:
            self.commit(self.decide(decide.change_tags, worker_id, replace=tags))

    def late_report(self, index: int) -> None:
        """A report from an attempt whose lease expired must be refused."""
        if not self.stale:
            return
        task_id, worker_id, attempt = self.pick(self.stale, index)
        report = decide.Completion(
            task_id=task_id, worker_id=worker_id, attempt=attempt, exit_code=0, duration_s=1.0
        )
        try:
            self.decide(decide.complete, report)
        except StaleAttempt:
            return
        raise AssertionError(f"stale report {task_id}/{attempt} on {worker_id} was accepted")

    def restart(self) -> None:
        self.commit(decide.server_started(TIMEOUT_S))

    def cancel_group(self, index: int) -> None:
        if not self.caps:
            return
        group = sorted(self.caps)[index % len(self.caps)]
        self.commit(self.decide(decide.cancel_group, group))
        assert all(
            t.group is None or t.group.id != group or t.state is TaskState.CANCELLING
            for t in self.state.tasks.values()
        )

    def run(self, ops: list[Op]) -> Sim:
        for op in ops:
            self.now += timedelta(seconds=1)
            name, *args = op
            getattr(self, name)(*args)
            self.check_workflows()
        return self


# -- generating runs -------------------------------------------------------------

tag_sets = st.frozensets(st.sampled_from(TAGS))


NAMES = (
    *["submit"] * 5,
    *["flow"] * 3,
    *["claim"] * 6,
    *["complete"] * 3,
    "retry_due",
    "cancel_group",
    "register",
    "cancel",
    "lose",
    "stop",
    "retag",
    "late_report",
    "restart",
)


def _op(
    name: str,
    i: int,
    tags: frozenset[str],
    want: frozenset[str],
    priority: int,
    n: int,
    key: str | None,
    flag: bool,
) -> Op:
    """Keep the fields operation `name` takes."""
    match name:
        case "submit":
            return (name, tags, want, priority, n, key, TASK_RESOURCES[i % 6] if flag else ())
        case "register":
            return (name, tags, n + 1, WORKER_RESOURCES[i % 4] if flag else ())
        case "complete":
            return (name, i, 1 if flag and n == 1 else 0, flag and n == 2)
        case "lose":
            return (name, None if flag and n == 1 else i)
        case "retag":
            return (name, i, tags)
        case "restart":
            return (name,)
        case "flow":
            deps = (i,) if flag else ()
            return (
                name,
                tags,
                priority,
                deps if n != 3 else (),
                deps if n == 3 else (),
                None if n == 1 else -1 if flag else i,
                n - 1 or None,
                n - 1,
                TASK_RESOURCES[i % 6] if n == 2 else (),
            )
        case "retry_due":
            return (name, n * 2)
    return (name, i)


RESOURCE_FIELD = {"submit": 6, "register": 3, "flow": 8}  # where each op has its amounts


def without_resources(ops: list[Op]) -> list[Op]:
    """The same run with no resources asked for or declared."""
    return [(*op[: RESOURCE_FIELD[op[0]]], ()) if op[0] in RESOURCE_FIELD else op for op in ops]


def operations(
    min_size: int = 40, max_size: int = 200, *, resources: bool = True
) -> st.SearchStrategy[list[Op]]:
    """Runs as hypothesis sees them: a few workers first, then mostly submits and claims
    (without `resources`, none asked for or declared)."""
    op = st.builds(
        _op,
        st.sampled_from(NAMES),
        st.integers(0, 50),
        tag_sets,
        tag_sets,
        st.sampled_from(PRIORITIES),
        st.integers(1, 3),
        st.none() | st.sampled_from(KEYS),
        st.booleans(),
    )
    register = st.tuples(
        st.just("register"),
        tag_sets,
        st.integers(1, 4),
        st.sampled_from(((), *WORKER_RESOURCES)),
    )
    return st.builds(
        lambda first, rest: first + rest if resources else without_resources(first + rest),
        st.lists(register, min_size=1, max_size=4),
        st.lists(op, min_size=min_size, max_size=max_size),
    )


def random_operations(rng: random.Random, n: int, *, resources: bool = True) -> list[Op]:
    """The same kind of run from a seeded generator (deterministic, for store tests)."""
    ops = _random_operations(rng, n, resources)
    return ops if resources else without_resources(ops)


def _random_operations(rng: random.Random, n: int, resources: bool) -> list[Op]:

    def tags(p: float = 0.3) -> frozenset[str]:
        return frozenset(t for t in TAGS if rng.random() < p)

    def amounts(choices: tuple[Amounts, ...], p: float) -> Amounts:
        """Some amounts, or none (then the generator is where a run without them has it)."""
        if not resources:
            return ()
        return rng.choice(choices) if rng.random() < p else ()

    ops: list[Op] = [
        ("register", tags(0.6), rng.randint(1, 3), amounts(WORKER_RESOURCES, 0.6)) for _ in range(3)
    ]
    weights = {
        "submit": 24,
        "flow": 12,
        "retry_due": 3,
        "cancel_group": 1,
        "claim": 30,
        "complete": 20,
        "cancel": 4,
        "register": 4,
        "lose": 2,
        "stop": 1,
        "retag": 3,
        "late_report": 2,
        "restart": 1,
    }
    names = list(weights)
    for name in rng.choices(names, weights=[weights[n] for n in names], k=n):
        i = rng.randint(0, 50)
        match name:
            case "submit":
                key = rng.choice((*[None] * 8, *KEYS, f"u{len(ops)}"))
                require, want = tags(0.15), tags()
                priority, attempts = rng.choice(PRIORITIES), rng.randint(1, 3)
                asks = amounts(TASK_RESOURCES, 0.4)
                ops.append((name, require, want, priority, attempts, key, asks))
            case "register":
                ops.append((name, tags(0.6), rng.randint(1, 3), amounts(WORKER_RESOURCES, 0.5)))
            case "complete":
                ops.append((name, i, rng.choice((0, 0, 1)), rng.random() < 0.2))
            case "lose":
                ops.append((name, None if rng.random() < 0.2 else i))
            case "retag":
                ops.append((name, i, tags(0.6)))
            case "restart":
                ops.append((name,))
            case "flow":
                after = tuple(rng.randint(0, 50) for _ in range(rng.choice((0, 0, 1, 2))))
                after_any = tuple(rng.randint(0, 50) for _ in range(rng.choice((0, 0, 0, 1))))
                group = rng.choice((None, None, -1, i))
                cap = rng.choice((None, 1, 2, 3))
                ops.append(
                    (
                        name,
                        tags(0.15),
                        rng.choice(PRIORITIES),
                        after,
                        after_any,
                        group,
                        cap,
                        rng.choice((0, 0, 1, 2)),
                        amounts(TASK_RESOURCES, 0.3),
                    )
                )
            case "retry_due":
                ops.append((name, rng.choice((1, 2, 5, 30))))
            case _:
                ops.append((name, i))
    return ops
