"""One deploy per environment at a time: a fenced MySQL named lock on the environment's database.

The lock lives on one connection held for the whole deploy, so a killed deploy process
releases it with its connection. The server can lose it too (MySQL killed, restarted, a
failover): then a second deploy may take it while the first still runs. So the holder keeps
checking, on its own connection, that the lock is still its own (a heartbeat thread), and a
deploy calls ``DeployLock.verify()`` (the fence) before every traffic move and before it
records success: a lost lock stops the deploy there, never silently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from gangway.config import DeployConfig
from gangway.errors import GangwayError
from tasks import lock_holders, schema
from tasks.ledger import Ledger
from tasks.migrations import lock_name

# A check the server does not answer within this counts as a loss: a hung server (a failover
# in progress) must not hold the fence open. With the default 1 s heartbeat a loss is seen
# within 1 + 3 s, inside the 5 s the deploy promises.
CHECK_TIMEOUT_S = 3
# GET_LOCK waits in slices shorter than CHECK_TIMEOUT_S, so the read timeout never cuts a
# legitimate wait for the lock short.
ACQUIRE_SLICE_S = 1


class DeployLockError(GangwayError):
    """Another deploy to the same environment holds the lock."""

    boundary = "orchestration"


class DeployLockLost(GangwayError):
    """This deploy no longer holds its environment's lock: it must not move traffic."""

    boundary = "orchestration"


@dataclass(frozen=True)
class LockLoss:
    """When the holder first saw its lock gone, and why."""

    at: datetime
    reason: str

    def describe(self) -> str:
        """e.g. 'at 21:04:05.123 UTC: the lock's connection failed: ...' (for messages)."""
        return f"at {self.at:%H:%M:%S}.{self.at.microsecond // 1000:03d} UTC: {self.reason}"


class DeployLock:
    """The held deploy lock: a heartbeat watches it, ``verify`` fences a traffic move."""

    def __init__(
        self, conn: sa.Connection, name: str, config: DeployConfig, heartbeat_s: float
    ) -> None:
        self._conn = conn
        self.name = name
        self._env = config.environment.name
        self._secrets = config.secret_values()
        self._heartbeat_s = heartbeat_s
        # The heartbeat and verify() share the one connection that holds the lock.
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._lost: LockLoss | None = None
        self._thread = threading.Thread(
            target=self._beat, name=f"deploy-lock heartbeat ({self._env})", daemon=True
        )

    @property
    def lost(self) -> LockLoss | None:
        """The first loss seen (None while the lock is held)."""
        return self._lost

    def verify(self) -> None:
        """Raise DeployLockLost unless this deploy still holds the lock (checked live)."""
        loss = self._lost or self._check()
        if loss is not None:
            raise DeployLockLost(
                f"the deploy lock of {self._env} was lost; no more traffic moves",
                expected=f"this deploy to hold the lock {self.name!r} on its own connection "
                "until it ends",
                found=loss.describe(),
                remedy="what this deploy moved is put back unless another deploy moved it "
                "since; check MySQL (a restart or failover frees every named lock), then "
                "re-run the deploy",
            )

    def start(self) -> None:
        """Start the heartbeat."""
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and release the lock; a lock already gone is recorded, not raised."""
        self._stop.set()
        self._thread.join(timeout=CHECK_TIMEOUT_S + self._heartbeat_s + 1)
        with self._guard:
            if self._lost is not None:
                return
            try:
                released = self._conn.execute(
                    sa.text("SELECT RELEASE_LOCK(:n)"), {"n": self.name}
                ).scalar()
            except SQLAlchemyError as exc:
                self._lose(f"releasing it failed: {self._scrub(exc)}")
                return
            if released != 1:
                self._lose(f"RELEASE_LOCK answered {released!r}: it was no longer held")

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            if self._check() is not None:
                return

    def _check(self) -> LockLoss | None:
        with self._guard:
            if self._lost is not None:
                return self._lost
            try:
                row = self._conn.execute(
                    sa.text("SELECT IS_USED_LOCK(:n), CONNECTION_ID()"), {"n": self.name}
                ).one()
            except Exception as exc:  # any failed check: the lock is not proven
                # A dead connection took its locks with it; whatever else failed, the
                # heartbeat thread must record it rather than die printing a traceback.
                return self._lose(f"the lock's connection failed: {self._scrub(exc)}")
            holder, me = row
            if holder == me:
                return None
            if holder is None:
                return self._lose(
                    f"no connection holds it any more (this one is {me}: the server restarted "
                    "or the lock was freed)"
                )
            return self._lose(f"connection {holder} holds it now, not this one ({me})")

    def _lose(self, reason: str) -> LockLoss:
        # Under self._guard: only the first loss is kept.
        if self._lost is None:
            self._lost = LockLoss(at=datetime.now(UTC), reason=reason[:500])
        return self._lost

    def _scrub(self, exc: Exception) -> str:
        orig = getattr(exc, "orig", None) or exc
        text = f"{type(orig).__name__}: {orig}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]


def _engine(config: DeployConfig) -> sa.Engine:
    """The lock's own engine: every read bounded, so a hung server is a loss, not a hang."""
    return sa.create_engine(
        config.database_url(),
        connect_args={
            "connect_timeout": schema.CONNECT_TIMEOUT_S,
            "read_timeout": CHECK_TIMEOUT_S,
            "write_timeout": CHECK_TIMEOUT_S,
        },
        poolclass=NullPool,
        # No transaction stays open for the deploy's whole length on the lock's connection.
        isolation_level="AUTOCOMMIT",
    )


def _acquire(conn: sa.Connection, name: str, timeout_s: int) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        wait = max(0, min(ACQUIRE_SLICE_S, round(deadline - time.monotonic())))
        got = conn.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": wait}).scalar()
        if got == 1:
            return True
        if time.monotonic() >= deadline or wait == 0:
            return False


class HeldLock(Protocol):
    """What a deploy needs of the lock it holds, whichever store holds it."""

    name: str

    @property
    def lost(self) -> LockLoss | None: ...

    def verify(self) -> None: ...


@contextmanager
def deploy_lock(
    config: DeployConfig,
    timeout_s: int,
    describe_holder: Callable[[], str],
    holder_id: str = "",
) -> Iterator[HeldLock]:
    """Hold the environment's deploy lock, waiting at most timeout_s for it; yields the fence.

    A MySQL named lock on the environment's database; a service without a database holds a
    lease in the ledger store instead (tasks/lease_lock.py). Leaving never raises over a lost
    lock: ``lost`` says when and why it went. holder_id (a deploy id, "reconciler") is
    recorded with the named lock's holder (tasks/lock_holders.py) for `gangway unlock`.
    """
    if config.environment.database is None:
        from tasks.lease_lock import lease_lock  # it builds on this module's errors

        with lease_lock(config, timeout_s, describe_holder) as lease:
            yield lease
        return
    with _named_lock(config, timeout_s, describe_holder, holder_id) as lock:
        yield lock


def used_by(conn: sa.Connection, name: str) -> int | None:
    """The id of the MySQL connection holding the named lock (None: nobody holds it)."""
    held = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
    return None if held is None else int(held)


@dataclass(frozen=True)
class SeenConnection:
    """A MySQL connection as the server's process list shows it."""

    user: str
    host: str
    command: str
    idle_s: float  # seconds since its last statement; 0 while one runs

    def describe(self) -> str:
        """``user@host, Command for Ns``."""
        return f"{self.user}@{self.host}, {self.command} for {self.idle_s:.0f}s"


def connection_seen(conn: sa.Connection, connection_id: int) -> SeenConnection | None:
    """The process-list entry of connection_id (None: gone, or not visible to this user)."""
    row = conn.execute(
        sa.text(
            "SELECT USER, HOST, COMMAND, TIME FROM information_schema.PROCESSLIST WHERE ID = :i"
        ),
        {"i": connection_id},
    ).first()
    if row is None:
        return None
    user, host, command, seconds = row
    idle = float(seconds or 0) if str(command) == "Sleep" else 0.0
    return SeenConnection(str(user), str(host), str(command), idle)


def named_lock_holder(config: DeployConfig) -> str | None:
    """Who holds the environment's deploy lock now, read only (None: nobody)."""
    name = lock_name(config, "deploy")
    engine = _engine(config)
    try:
        with engine.connect() as conn:
            holder = used_by(conn, name)
            if holder is None:
                return None
            # Visible for the lock's own user (deploys share it); else only the id is known.
            who = connection_seen(conn, holder)
    except SQLAlchemyError as exc:
        raise schema.db_error(config, exc, "reading the deploy lock") from exc
    finally:
        engine.dispose()
    where = f" ({who.user}@{who.host})" if who else ""
    return f"MySQL connection {holder}{where} holds {name!r}"


@contextmanager
def _named_lock(
    config: DeployConfig, timeout_s: int, describe_holder: Callable[[], str], holder_id: str
) -> Iterator[DeployLock]:
    name = lock_name(config, "deploy")
    engine = _engine(config)
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        engine.dispose()
        raise schema.db_error(config, exc, "taking the deploy lock") from exc
    try:
        try:
            got = _acquire(conn, name, timeout_s)
        except SQLAlchemyError as exc:
            raise schema.db_error(config, exc, "taking the deploy lock") from exc
        if not got:
            raise DeployLockError(
                f"another deploy to {config.environment.name} is in progress",
                expected=f"the deploy lock {name!r} within {timeout_s}s",
                found=describe_holder(),
                remedy="wait for it to finish (or raise environment.deploy.lock_timeout_s); "
                "a killed deploy releases the lock with its connection",
            )
        try:
            _register(config, conn, name, holder_id)
        except SQLAlchemyError as exc:
            raise schema.db_error(config, exc, "naming the deploy lock's holder") from exc
        lock = DeployLock(conn, name, config, config.environment.deploy.lock_heartbeat_s)
        lock.start()
        try:
            yield lock
        finally:
            lock.release()
    finally:
        try:
            conn.close()
        except SQLAlchemyError:  # a dead connection has nothing left to close
            pass
        engine.dispose()


def _register(config: DeployConfig, conn: sa.Connection, name: str, holder_id: str) -> None:
    """Name this process as the lock's holder in the ledger store (before anything it guards)."""
    ledger = Ledger(secrets=config.secret_values())
    try:
        lock_holders.register(ledger, name, conn, holder_id)
    finally:
        ledger.engine.dispose()
