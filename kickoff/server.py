"""Running the server: uvicorn around create_app(), start-up lines, graceful shutdown.

No routes (api/) and no state (service/): this runs them, with the process's limits.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from kickoff import auth, defaults, leader
from kickoff.api.app import create_app
from kickoff.api.protocol import protocol_class
from kickoff.api.routes import is_standby_read
from kickoff.dblocation import Location, ServerUrl
from kickoff.errors import CannotListen, DatabaseRefused, KickoffError
from kickoff.service import Service, StartUp
from kickoff.state.task_state import LIVE_STATES
from kickoff.store.connection import lock_exclusive
from kickoff.store.lease import Lease

logger = logging.getLogger(__name__)


Drain = Callable[[int], None]


class _Server(uvicorn.Server):
    """uvicorn, plus: on SIGINT/SIGTERM, release long-poll claims at once and exit 0.

    With a `drain` (kickoff up: pass the signal on to the local worker and wait for it),
    the first two signals run it in a thread while the server keeps serving, so the worker
    can report, requeue and deregister; the server stops once it returns. A third signal
    stops the server at once.
    """

    def __init__(self, config: uvicorn.Config, service: Service, drain: Drain | None) -> None:
        super().__init__(config)
        self.service = service
        self.drain = drain
        self.drains = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self.service.loop
        if self.drain is not None and self.drains < 2 and loop is not None:
            self.drains += 1
            drain = self.drain

            async def drain_then_stop() -> None:
                await asyncio.to_thread(drain, sig)
                self.drains = 2
                self.handle_exit(sig, None)

            loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop()))
            return
        self.service.begin_shutdown()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a graceful stop is a normal exit, not a re-raise


LOOPBACK = ("127.0.0.1", "localhost", "::1")
EVERYWHERE = ("0.0.0.0", "::", "")


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket: taken first, before any file is touched, so a server
    that cannot start changes nothing (not the token of the one already on that port).

    Raises:
        CannotListen: the port is in use, or the address cannot be listened on.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(defaults.LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"cannot listen on {host}:{port}: the port is in use (another kickoff "
                f"server? `kickoff stats --server {host}:{port}` asks it); stop it or pass "
                "another --port"
            ) from None
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def worker_lines(host: str, port: int, token: str) -> list[str]:
    """How to start workers, as the server listens: on the network, a ready-to-paste
    command; on loopback only, that nothing else can reach it, and the way through."""
    name = socket.gethostname()
    if host in LOOPBACK:
        return [
            f"listening on {host} only (loopback): no other machine can reach it; "
            "--host 0.0.0.0 listens on the network (see docs/security.md)",
            f"start a worker elsewhere, through an SSH tunnel: ssh -fN -L {port}:{host}:{port} "
            f"{name} && kickoff worker --server 127.0.0.1:{port} --token {token} --have TAGS",
            "(a worker on this machine needs no --token)",
        ]
    shown = name if host in EVERYWHERE else host
    return [
        f"start a worker elsewhere: kickoff worker --server {shown}:{port} --token {token} "
        "--have TAGS",
        "(a worker on this machine needs no --token)",
    ]


def _loaded(start: StartUp) -> str:
    """How the state was loaded: what `replayed N events` used to claim for the tail only."""
    if start.warm:
        return (
            f"took over with the state followed warm to seq {start.checkpoint_seq:,} and "
            f"{start.folded:,} events after it in {start.seconds:.3f}s"
        )
    if start.checkpoint_seq == 0 and start.folded == 0:
        return f"an empty log, opened in {start.seconds:.3f}s"
    if start.checkpoint_seq == 0:
        return f"replayed {start.folded:,} events in {start.seconds:.3f}s"
    return (
        f"loaded the checkpoint at seq {start.checkpoint_seq:,} and {start.folded:,} "
        f"events after it in {start.seconds:.3f}s"
    )


def startup_lines(service: Service, host: str, port: int, token: str) -> list[str]:
    counts = service.state.counts
    live = ", ".join(f"{counts[s]} {s}" for s in LIVE_STATES)
    return [
        f"kickoff server listening on http://{host}:{port}",
        f"database: {service.db_path}",
        f"{_loaded(service.start_up)}; tasks: {live}; {len(service.state.workers)} workers known",
        *worker_lines(host, port, token),
    ]


def serve(
    *,
    db_path: Location,
    host: str,
    port: int,
    heartbeat_timeout_s: float,
    rotate_token: bool = False,
    on_ready: Callable[[Service, str], None] | None = None,
    drain: Drain | None = None,
    output_cap: int = defaults.OUTPUT_CAP_BYTES,
    output_budget: int = defaults.OUTPUT_BUDGET_BYTES,
    lease_timeout_s: float = defaults.LEASE_TIMEOUT_S,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Run a server until SIGINT/SIGTERM.

    In this order, so that a server that cannot start changes as little as possible: the
    port, the database lock, the token file, the database, then the client config. On a
    PostgreSQL database several servers may run: one leads, the others wait as standbys
    (kickoff/leader.py).

    Raises:
        CannotListen: the port is in use (nothing was touched).
        DatabaseRefused: the database cannot be used (reported before serving).
    """
    sock = listen(host, port)
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    lease: Lease | None = None
    try:  # held until this process ends
        lock = _lock(db_path)
        if isinstance(db_path, ServerUrl):  # shared by several servers: one leads
            lease = _lease(db_path, host, port, lease_timeout_s)
    except BaseException:
        sock.close()
        raise
    try:
        token = _token(db_path, rotate_token)
        service = Service(
            db_path,
            heartbeat_timeout_s=heartbeat_timeout_s,
            output_cap=output_cap,
            output_budget=output_budget,
            fence=None if lease is None else lease.fence,
        )
        files, connections = connection_limit()
        app = create_app(
            service, token=token, token_file=auth.token_path(db_path), manage_service=False
        )
        gate = leader.Gate(app, is_standby_read)
        gate.leading = lease is None
        config = uvicorn.Config(
            gate,
            log_level="warning",
            lifespan="off",
            loop="uvloop" if _has_uvloop() else "asyncio",
            http=protocol_class(connections),
            ws="none",
            timeout_keep_alive=defaults.KEEP_ALIVE_S,
            timeout_graceful_shutdown=defaults.SHUTDOWN_GRACE_S,
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is not to be trusted by default; a layer
        )
        server = _Server(config, service, drain)
        lost: list[bool] = []

        def lose() -> None:
            lost.append(True)
            service.begin_shutdown()
            server.should_exit = True

        async def main() -> None:
            loop = asyncio.get_running_loop()
            serving: asyncio.Task[None] | None = None
            if lease is not None and not await asyncio.to_thread(lease.take):
                # a standby until the lease is this server's, its state kept warm; it
                # names the leader from its first answer on
                gate.leader = (await asyncio.to_thread(lease.leader))[0]
                follower = await asyncio.to_thread(leader.Follower, lease.where)
                await service.answer_reads(
                    follower.state, follower.recorder
                )  # from the state it keeps warm
                gate.seq = lambda: follower.state.last_seq
                serving = loop.create_task(server.serve(sockets=[sock]))
                if not await leader.wait_to_lead(lease, gate, announce, serving.done):
                    await asyncio.to_thread(follower.take)
                    await service.reads.close()
                    await serving
                    return
                warm = await asyncio.to_thread(follower.take)
                service.warm = None if warm is None else lambda: warm
                # the token as the database holds it now (rotated meanwhile?): the app's
                # token file watch takes it up
                await asyncio.to_thread(_token, db_path, False)
            await service.start()
            renewing = None if lease is None else loop.create_task(leader.keep_leading(lease, lose))
            try:
                _remember(token, host, port)
                logger.info("at most %d connections (descriptor limit %d)", connections, files)
                tune_runtime()
                # the socket listens already: connections wait for the loop, after the banner
                for line in startup_lines(service, host, port, token):
                    announce(line)
                gate.leading = True
                if serving is None:
                    serving = loop.create_task(server.serve(sockets=[sock]))
                while not server.started and not serving.done():
                    await asyncio.sleep(0.005)
                if server.started and on_ready is not None:
                    on_ready(service, token)
                await serving
            finally:
                if renewing is not None:
                    renewing.cancel()
                await service.stop()
                if lease is not None and not lost:
                    await asyncio.to_thread(lease.release)  # a standby need not wait it out

        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
        if lost:
            raise DatabaseRefused(
                f"lost the lease of {db_path}: another server leads it now; this one stopped"
            )
    finally:
        sock.close()
        lock()
        if lease is not None:
            lease.close()


def _lease(where: ServerUrl, host: str, port: int, timeout_s: float) -> Lease:
    """This server's lease on a shared database: held as `host:port`, the address clients
    are told (the machine's name when it listens everywhere)."""
    shown = socket.gethostname() if host in EVERYWHERE else host
    return Lease(
        where,
        holder=f"{socket.gethostname()}:{port}",
        address=f"{shown}:{port}",
        timeout_s=timeout_s,
    )


def _token(db: Location, rotate: bool) -> str:
    """The server's token: a file's beside it; for PostgreSQL the one every server on the
    database shares (kept in the database, so a standby that takes over accepts the
    clients' token), copied to this machine's token file for local clients."""
    if isinstance(db, Path):
        return auth.load_or_create_token(db, rotate=rotate)
    from kickoff.database import shared_token

    token = shared_token(db, auth.new_token(), replace=rotate)
    auth.write_token_file(auth.token_path(db), token)
    return token


def _lock(db: Location) -> Callable[[], None]:
    """Take a database file's lock (`<db>.lock`; PostgreSQL's is the lease); returns what
    releases it.

    Raises:
        DatabaseRefused: another server holds it.
    """
    if isinstance(db, Path):
        fd = lock_exclusive(db)
        return lambda: os.close(fd)
    return lambda: None


def _remember(token: str, host: str, port: int) -> None:
    """Record the token for local clients, once the server is sure to start."""
    try:
        auth.remember_token(port, token, host=host)
    except KickoffError as exc:  # local clients will need --token; not a reason to stop
        logger.warning("%s; local clients need --token or KICKOFF_TOKEN", exc.message)


def open_files_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one; the limit now in force.

    Every connection costs one: with a low soft limit (1024 is common) a few hundred idle
    sockets could exhaust it, and then even the listening socket's accept() fails.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return min(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):  # a hard limit above the kernel's nr_open
        return soft
    return wanted


def connection_limit() -> tuple[int, int]:
    """The limit on open descriptors (raised first), and the connection limit: at most
    MAX_CONNECTIONS, FD_RESERVE (a quarter of a small limit) below the first."""
    files = open_files_limit()
    limit = max(1, min(defaults.MAX_CONNECTIONS, files - min(defaults.FD_RESERVE, files // 4)))
    return files, limit


def tune_runtime() -> None:
    """Once the state is loaded: keep the interpreter's own costs off the hot paths.

    - The live state is long-lived: frozen, the cyclic garbage collector no longer rescans
      it. A bulk submit allocates a few objects per task and most live on (the tasks):
      with the default young generation of 700 the collector ran every few tasks; 50,000
      costs little memory and saves about a tenth of a bulk submit's CPU.
    - The writer thread gives up the GIL in every SQLite step and then waits for the event
      loop to give it back, by default up to 5 ms later: with both busy (a bulk submit:
      the loop parses and encodes the next batch while the writer inserts this one) the
      writer mostly waited. A 0.1 ms switch interval: bulk submits 88k -> 108k tasks/s
      over HTTP (bench/); an idle or lightly loaded server never contends.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    sys.setswitchinterval(0.0001)


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
