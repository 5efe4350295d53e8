"""The leader's lease on a PostgreSQL database: several servers share one database, and
the one holding the unexpired lease is the leader, its only writer; the others are
standbys that take the lease over once it lapses.

One row: the epoch (one more at every takeover), the holder, the address clients reach
it at, the expiry. Times are the database's clock (clock_timestamp()), never a server's.
Every commit checks in its own transaction that the lease is still its holder's and
unexpired (`fence`, with FOR SHARE: a takeover waits for that commit, and a commit after
a takeover fails), so a server whose lease lapsed (paused, cut off) cannot write after
another took over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable

from kickoff.dblocation import ServerUrl
from kickoff.errors import DatabaseRefused, NotLeader
from kickoff.store.pgconnection import PgConnection
from kickoff.store.query import Connection

logger = logging.getLogger(__name__)

CREATE_KEY = 0x4B49434C  # held while the lease's table is made
CREATE = (
    "CREATE TABLE IF NOT EXISTS kickoff_lease (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "epoch BIGINT NOT NULL, holder TEXT NOT NULL, address TEXT NOT NULL, "
    "expires_at TIMESTAMPTZ NOT NULL)"
)
SEED = (
    "INSERT INTO kickoff_lease (id, epoch, holder, address, expires_at) "
    "VALUES (1, 0, '', '', '-infinity') ON CONFLICT (id) DO NOTHING"
)
# a lapsed lease, or this holder's own (a server restarted on its port: nobody else can
# hold that port meanwhile, not even a paused process, which keeps it bound)
TAKE = (
    "UPDATE kickoff_lease SET epoch = epoch + 1, holder = ?, address = ?, "
    "expires_at = clock_timestamp() + make_interval(secs => ?) "
    "WHERE id = 1 AND (expires_at < clock_timestamp() OR holder = ?) RETURNING epoch"
)
RENEW = (
    "UPDATE kickoff_lease SET expires_at = clock_timestamp() + make_interval(secs => ?) "
    "WHERE id = 1 AND epoch = ? AND expires_at > clock_timestamp() RETURNING epoch"
)
NOTIFY_CHANNEL = "kickoff_log"  # standbys LISTEN: a wake-up, the log read by seq is the truth
FENCE = (  # (and the commit's notice to the standbys, delivered when it commits)
    f"SELECT epoch, pg_notify('{NOTIFY_CHANNEL}', '') FROM kickoff_lease "
    "WHERE id = 1 AND epoch = ? AND expires_at > clock_timestamp() FOR SHARE"
)
LEADER = "SELECT address, epoch, expires_at > clock_timestamp() FROM kickoff_lease WHERE id = 1"
RELEASE = "UPDATE kickoff_lease SET expires_at = '-infinity' WHERE id = 1 AND epoch = ?"


class Lease:
    """One server's hold (or wait) on a database's lease, on a connection of its own."""

    def __init__(self, where: ServerUrl, *, holder: str, address: str, timeout_s: float):
        self.where, self.holder, self.address = where, holder, address
        self.timeout_s = timeout_s
        self.epoch: int | None = None  # while this server holds it
        self.conn = PgConnection(where)
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("SELECT pg_advisory_xact_lock(?)", (CREATE_KEY,))
            self.conn.execute(CREATE)
            self.conn.execute(SEED)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.conn.close()
            raise

    def take(self) -> bool:
        """Take the lease if it lapsed (or is this holder's); True when held now."""
        found = self.conn.execute(
            TAKE, (self.holder, self.address, self.timeout_s, self.holder)
        ).fetchone()
        self.epoch = None if found is None else int(found[0])
        if self.epoch is not None:
            logger.info("took the lease of %s: epoch %d", self.where, self.epoch)
        return self.epoch is not None

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer this server's (lapsed, taken)."""
        if self.epoch is None:
            return False
        found = self.conn.execute(RENEW, (self.timeout_s, self.epoch)).fetchone()
        return found is not None

    def leader(self) -> tuple[str, int, bool]:
        """The address of the last leader, its epoch, and whether its lease still holds."""
        address, epoch, live = self.conn.execute(LEADER).fetchone()
        return str(address), int(epoch), bool(live)

    def fence(self, conn: Connection) -> None:
        """Inside a write's transaction (on the writer's connection): the lease is still
        this server's and unexpired, and stays so until that transaction ends.

        Raises:
            NotLeader: it is not (nothing of the write is committed).
        """
        if self.epoch is None or conn.execute(FENCE, (self.epoch,)).fetchone() is None:
            raise NotLeader(
                f"this server's lease on {self.where} (epoch {self.epoch}) has lapsed: "
                "another server may lead now; nothing was written"
            )

    def release(self) -> None:
        """Give the lease up at once (a graceful stop), so a standby need not wait it out."""
        if self.epoch is not None:
            self.conn.execute(RELEASE, (self.epoch,))
            self.epoch = None

    def close(self) -> None:
        self.conn.close()


def hold_offline(where: ServerUrl, what: str) -> Callable[[], None]:
    """Take the lease for an offline command (`projections rebuild`, `migrate`), so no
    server leads meanwhile; renewed on a thread. Returns what gives it back.

    Raises:
        DatabaseRefused: a server leads the database.
    """
    lease = Lease(where, holder=f"{what} (pid {os.getpid()})", address=what, timeout_s=5.0)
    if not lease.take():
        address, _, _ = lease.leader()
        lease.close()
        raise DatabaseRefused(
            f"{where} is in use by the kickoff server at {address}; stop it (and its "
            "standbys) first, or pass another --db"
        )
    done = threading.Event()

    def renew() -> None:
        while not done.wait(1.0):
            with contextlib.suppress(sqlite3.Error):
                lease.renew()

    thread = threading.Thread(target=renew, name="kickoff-lease", daemon=True)
    thread.start()

    def give_back() -> None:
        done.set()
        thread.join()
        with contextlib.suppress(sqlite3.Error):
            lease.release()
        lease.close()

    return give_back
