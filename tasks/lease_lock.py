"""One deploy per environment for a service without a database: a lease in the ledger store.

A MySQL named lock dies with its connection; a lease row has no connection to die with, so it
carries an expiry instead. The holder renews it on every heartbeat and may act only while its
own token is the row's (compare-and-set on the token), so a holder that stalled past its expiry
finds the lease taken and stops, as the named lock's holder does when MySQL loses it. A killed
holder's lease is free again once it expires (LEASE_TTL_S), and the next deploy, or the
reconciler, recovers what it left.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gangway.config import DeployConfig
from gangway.errors import GangwayError
from tasks.env_lock import DeployLockError, DeployLockLost, LockLoss
from tasks.ledger import METADATA, Ledger

LEASES = sa.Table(
    "gangway_leases",
    METADATA,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("expires", sa.Double, nullable=False),  # epoch seconds (MySQL FLOAT keeps ~2 min)
)
# Long enough that a heartbeat (every lock_heartbeat_s, 1 s by default) renews it many times
# over before it lapses; short enough that a killed holder blocks the next deploy briefly.
LEASE_TTL_S = 15.0
ACQUIRE_POLL_S = 0.5


class LeaseError(GangwayError):
    """The ledger store could not hold or check the deploy lease."""

    boundary = "orchestration"


def store_error(ledger: Ledger, doing: str, exc: Exception) -> LeaseError:
    """The ledger store failed while doing something with a deploy lease."""
    return LeaseError(
        f"{doing} the deploy lease failed",
        expected=f"a readable, writable ledger store at {ledger.safe_url} (it holds the "
        "deploy lease of a service without a database)",
        found=f"{type(exc).__name__}: {str(exc)[:300]}",
        remedy="fix GANGWAY_LEDGER_URL or the permissions of GANGWAY_HOME",
    )


def lease_name(config: DeployConfig) -> str:
    """The lease's name: one per service and environment."""
    return f"gangway:deploy:{config.service.name}:{config.environment.name}"[:128]


class LeaseLock:
    """A held lease: a heartbeat renews it; ``verify`` fences a traffic move (as DeployLock)."""

    def __init__(self, ledger: Ledger, name: str, token: str, heartbeat_s: float) -> None:
        self._engine = ledger.engine
        self.name = name
        self._token = token
        self._heartbeat_s = heartbeat_s
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._lost: LockLoss | None = None
        self._thread = threading.Thread(target=self._beat, name=f"lease {name}", daemon=True)

    @property
    def lost(self) -> LockLoss | None:
        """The first loss seen (None while the lease is held)."""
        return self._lost

    def verify(self) -> None:
        """Raise DeployLockLost unless this deploy still holds the lease (renewed live)."""
        loss = self.lost or self._renew()
        if loss is not None:
            raise DeployLockLost(
                f"the deploy lease {self.name!r} was lost; no more traffic moves",
                expected="this deploy's token on the lease row until it ends",
                found=loss.describe(),
                remedy="what this deploy moved is put back unless another deploy moved it "
                "since; check the ledger store (GANGWAY_LEDGER_URL), then re-run the deploy",
            )

    def start(self) -> None:
        """Start the heartbeat."""
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease row if it is still this deploy's."""
        self._stop.set()
        self._thread.join(timeout=self._heartbeat_s + 5)
        with self._guard:
            if self._lost is not None:
                return
            try:
                with self._engine.begin() as conn:
                    gone = conn.execute(
                        LEASES.delete().where(
                            LEASES.c.name == self.name, LEASES.c.token == self._token
                        )
                    ).rowcount
            except SQLAlchemyError as exc:
                self._lose(f"releasing it failed: {type(exc).__name__}")
                return
            if gone != 1:
                self._lose("it was no longer this deploy's when released")

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            if self._renew() is not None:
                return

    def _renew(self) -> LockLoss | None:
        with self._guard:
            if self._lost is not None:
                return self._lost
            try:
                with self._engine.begin() as conn:
                    renewed = conn.execute(
                        LEASES.update()
                        .where(LEASES.c.name == self.name, LEASES.c.token == self._token)
                        .values(expires=time.time() + LEASE_TTL_S)
                    ).rowcount
            except SQLAlchemyError as exc:
                return self._lose(f"renewing it failed: {type(exc).__name__}: {str(exc)[:200]}")
            if renewed == 1:
                return None
            return self._lose("another holder took it after it expired (this deploy stalled)")

    def _lose(self, reason: str) -> LockLoss:
        if self._lost is None:
            self._lost = LockLoss(at=datetime.now(UTC), reason=reason[:500])
        return self._lost


def _try_take(ledger: Ledger, name: str, token: str, holder: str) -> bool:
    """Insert the lease, or take it over when it has expired; True when it is now ours."""
    now = time.time()
    with ledger.engine.begin() as conn:
        taken = conn.execute(
            LEASES.update()
            .where(LEASES.c.name == name, LEASES.c.expires < now)
            .values(token=token, holder=holder, expires=now + LEASE_TTL_S)
        ).rowcount
        if taken == 1:
            return True
        if conn.execute(sa.select(LEASES.c.token).where(LEASES.c.name == name)).first():
            return False
    try:
        with ledger.engine.begin() as conn:
            conn.execute(
                LEASES.insert().values(
                    name=name, token=token, holder=holder, expires=now + LEASE_TTL_S
                )
            )
    except sa.exc.IntegrityError:  # another deploy inserted it first
        return False
    return True


def lease_holder(ledger: Ledger, name: str) -> str:
    """Who holds the lease and until when, in words (for the refusal)."""
    row = _read(ledger, name)
    if row is None:
        return "nobody (it was just released)"
    left = row.expires - time.time()
    return f"{row.holder} (lease expires in {left:.0f}s unless renewed)"


def active_lease_holder(ledger: Ledger, name: str) -> str | None:
    """Who holds the lease now, read only (None: no lease, or only an expired one)."""
    try:
        row = _read(ledger, name)
    except SQLAlchemyError as exc:
        raise store_error(ledger, "reading", exc) from exc
    if row is None or row.expires < time.time():
        return None
    return f"{row.holder} (lease expires in {row.expires - time.time():.0f}s unless renewed)"


def _read(ledger: Ledger, name: str) -> sa.Row | None:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(LEASES).where(LEASES.c.name == name)).first()


@contextmanager
def lease_lock(
    config: DeployConfig, timeout_s: int, describe_holder: Callable[[], str]
) -> Iterator[LeaseLock]:
    """Hold the service's deploy lease in the ledger store, waiting at most timeout_s."""
    ledger = Ledger()
    name = lease_name(config)
    token = uuid.uuid4().hex
    holder = f"{socket.gethostname()} pid {os.getpid()}"
    deadline = time.monotonic() + timeout_s
    try:
        while not _try_take(ledger, name, token, holder):
            if time.monotonic() >= deadline:
                raise DeployLockError(
                    f"another deploy of {config.service.name} to {config.environment.name} is "
                    "in progress",
                    expected=f"the deploy lease {name!r} within {timeout_s}s",
                    found=f"{describe_holder()}; lease held by {lease_holder(ledger, name)}",
                    remedy="wait for it to finish (or raise environment.deploy.lock_timeout_s); "
                    f"a killed deploy's lease expires within {LEASE_TTL_S:.0f}s",
                )
            time.sleep(ACQUIRE_POLL_S)
    except SQLAlchemyError as exc:
        raise store_error(ledger, "taking", exc) from exc
    lock = LeaseLock(ledger, name, token, config.environment.deploy.lock_heartbeat_s)
    lock.start()
    try:
        yield lock
    finally:
        lock.release()
        ledger.engine.dispose()
