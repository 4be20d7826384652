"""Clear an environment's deploy lock only when its holder is proven gone (`gangway unlock`).

The rule never clears a live holder. A live holder proves itself alive all the time: a lease
holder renews its row every heartbeat, and a named-lock holder runs a check on the lock's own
connection every heartbeat (tasks/env_lock.py). So a lock is cleared only when

- lease: it expired (nobody renewed it for LEASE_TTL_S), or its holder is a process on this
  host that no longer exists (or is a zombie, or its pid was reused);
- named lock: the holder recorded when it was taken (tasks/lock_holders.py) is a process on
  this host that no longer exists AND its connection has been idle longer than a holder's
  heartbeat allows (so no process elsewhere is beating on it); or, for a holder on another
  host (whose process cannot be checked from here), its connection has been idle ABANDONED_S
  or more and its deploy record has had no event for as long.

A holder that is merely frozen past those limits (SIGSTOP, a hung host) and wakes up later is
fenced: its next verify() sees the lock lost and it moves no more traffic. Everything else is
refused, naming the holder. The clear itself is compare-and-set: the lease row is deleted only
if it still carries the token and expiry read; the connection is killed only if it still holds
the lock.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from gangway.config import DeployConfig
from tasks import schema
from tasks.env_lock import CHECK_TIMEOUT_S, SeenConnection, connection_seen, used_by
from tasks.lease_lock import LEASES, lease_name, store_error
from tasks.ledger import Ledger
from tasks.lock_holders import Holder, find, parse_lease_holder, process_gone, server_started
from tasks.migrations import lock_name

# A holder on another host: idle this long (60 heartbeats, at least this) is abandoned.
ABANDONED_MIN_S = 120.0
KILL_WAIT_S = 5.0

State = Literal["cleared", "free", "refused"]


@dataclass(frozen=True)
class Verdict:
    """What unlock found and did: the lock, its holder, and the proof or the refusal."""

    kind: str  # "lease" or "named lock"
    name: str
    state: State
    holder: str
    why: str


def stale_after_s(config: DeployConfig) -> float:
    """Idle seconds after which a named lock's connection is not being checked by its holder."""
    return 3 * config.environment.deploy.lock_heartbeat_s + CHECK_TIMEOUT_S


def abandoned_after_s(config: DeployConfig) -> float:
    """Idle seconds after which a holder on another host counts as abandoned."""
    return max(ABANDONED_MIN_S, 60 * config.environment.deploy.lock_heartbeat_s)


def clear_if_abandoned(config: DeployConfig, ledger: Ledger) -> Verdict:
    """Inspect the environment's deploy lock and clear it when its holder is proven gone."""
    if config.environment.database is None:
        return clear_lease(config, ledger)
    return clear_named_lock(config, ledger)


# -- the lease (a service without a database) ------------------------------------------------
def clear_lease(config: DeployConfig, ledger: Ledger) -> Verdict:
    """The lease row is deleted (compare-and-set) when expired or its holder process is gone."""
    name = lease_name(config)
    try:
        with ledger.engine.connect() as conn:
            row = conn.execute(sa.select(LEASES).where(LEASES.c.name == name)).first()
        if row is None:
            return Verdict("lease", name, "free", "nobody", "no lease row: nothing to clear")
        now = time.time()
        holder = f"{row.holder}, lease expires {_when(row.expires - now)}"
        proof = _lease_gone(row.holder, row.expires, now)
        if proof is None:
            return Verdict(
                "lease", name, "refused", holder,
                f"its holder may be alive: the lease is renewed every "
                f"{config.environment.deploy.lock_heartbeat_s:g}s while it lives"
                + ("" if _on_this_host(row.holder) else " and its host is not this one"),
            )
        with ledger.engine.begin() as conn:
            deleted = conn.execute(
                LEASES.delete().where(
                    LEASES.c.name == name,
                    LEASES.c.token == row.token,
                    LEASES.c.expires == row.expires,
                )
            ).rowcount
    except SQLAlchemyError as exc:
        raise store_error(ledger, "reading or clearing", exc) from exc
    if deleted != 1:
        return Verdict(
            "lease", name, "refused", holder,
            "the lease changed while it was checked (renewed or taken over): its holder is "
            "alive, or a new deploy holds it",
        )
    return Verdict("lease", name, "cleared", holder, proof)


def _lease_gone(holder: str, expires: float, now: float) -> str | None:
    if expires < now:
        return f"the lease expired {now - expires:.0f}s ago (its holder stopped renewing it)"
    parsed = parse_lease_holder(holder)
    return process_gone(*parsed) if parsed else None


def _on_this_host(holder: str) -> bool:
    parsed = parse_lease_holder(holder)
    return parsed is not None and parsed[0] == socket.gethostname()


def _when(seconds: float) -> str:
    return f"in {seconds:.0f}s" if seconds >= 0 else f"{-seconds:.0f}s ago"


# -- the MySQL named lock --------------------------------------------------------------------
def clear_named_lock(config: DeployConfig, ledger: Ledger) -> Verdict:
    """KILL the holding connection when its recorded holder is proven gone (see module doc)."""
    name = lock_name(config, "deploy")
    engine = sa.create_engine(
        config.database_url(),
        connect_args={"connect_timeout": schema.CONNECT_TIMEOUT_S},
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
    )
    try:
        with engine.connect() as conn:
            return _inspect_and_kill(config, ledger, conn, name)
    except SQLAlchemyError as exc:
        raise schema.db_error(config, exc, "inspecting or clearing the deploy lock") from exc
    finally:
        engine.dispose()


def _inspect_and_kill(
    config: DeployConfig, ledger: Ledger, conn: sa.Connection, name: str
) -> Verdict:
    holder_id = used_by(conn, name)
    if holder_id is None:
        return Verdict("named lock", name, "free", "nobody", "no connection holds it")
    holder = find(ledger, name, holder_id, server_started(conn))
    seen = connection_seen(conn, holder_id)
    where = f"MySQL connection {holder_id}" + (f" ({seen.describe()})" if seen else "")
    if holder is None:
        return Verdict(
            "named lock", name, "refused", where,
            "no gangway holder is recorded for this connection (a deploy by an older gangway, "
            "or a lock taken by hand): nothing proves its owner gone",
        )
    named = holder.describe() + (f" ({seen.describe()})" if seen else "")
    if seen is None:
        return Verdict(
            "named lock", name, "refused", named,
            f"connection {holder_id} is not visible in information_schema.PROCESSLIST to "
            f"{config.database.user if config.database else '?'} (grant PROCESS, or run as "
            "the lock's user): its idleness cannot be checked",
        )
    proof = _holder_gone(config, ledger, holder, seen)
    if proof.startswith("refused: "):
        return Verdict("named lock", name, "refused", named, proof.removeprefix("refused: "))
    # Compare-and-set: kill only the connection that still holds it.
    now_held = used_by(conn, name)
    if now_held != holder_id:
        state: State = "free" if now_held is None else "refused"
        return Verdict(
            "named lock", name, state, named,
            "it changed hands while it was checked"
            + ("" if now_held is None else f" (connection {now_held} holds it now)"),
        )
    conn.execute(sa.text(f"KILL CONNECTION {int(holder_id)}"))
    deadline = time.monotonic() + KILL_WAIT_S
    while used_by(conn, name) == holder_id and time.monotonic() < deadline:
        time.sleep(0.1)
    if used_by(conn, name) == holder_id:
        return Verdict(
            "named lock", name, "refused", named,
            f"KILL CONNECTION {holder_id} was sent but the lock was still held "
            f"{KILL_WAIT_S:.0f}s later",
        )
    return Verdict("named lock", name, "cleared", named, f"{proof}; killed connection {holder_id}")


def _holder_gone(config: DeployConfig, ledger: Ledger, holder: Holder, seen: SeenConnection) -> str:
    """The proof that holder is gone, or 'refused: <why>' (never a live holder's proof)."""
    beat = config.environment.deploy.lock_heartbeat_s
    if holder.host == socket.gethostname():
        gone = process_gone(holder.host, holder.pid, holder.taken_at)
        if gone is None:
            return f"refused: its process {holder.pid} is alive on this host"
        stale = stale_after_s(config)
        if seen.idle_s < stale:
            return (
                f"refused: {gone}, but its connection was used {seen.idle_s:.0f}s ago (a "
                f"holder checks it every {beat:g}s; gone means idle {stale:.0f}s or more): "
                "try again shortly"
            )
        return f"{gone} and its connection has been idle {seen.idle_s:.0f}s (>= {stale:.0f}s)"
    limit = abandoned_after_s(config)
    last = _record_age_s(ledger, holder.deploy_id)
    if seen.idle_s < limit or (last is not None and last < limit):
        return (
            f"refused: its host is not this one ({socket.gethostname()}), so its process cannot "
            f"be checked; its connection idle {seen.idle_s:.0f}s and its record's last event "
            f"{'-' if last is None else f'{last:.0f}s ago'} (both must be {limit:.0f}s or "
            f"more); check on {holder.host} that pid {holder.pid} is gone"
        )
    return (
        f"its connection has been idle {seen.idle_s:.0f}s and its deploy record silent "
        f"{'(none)' if last is None else f'{last:.0f}s'} (>= {limit:.0f}s; a live holder "
        f"checks the lock every {beat:g}s)"
    )


def _record_age_s(ledger: Ledger, deploy_id: str) -> float | None:
    """Seconds since the holder's deploy record last changed (None: no such record)."""
    events = ledger.events(deploy_id) if deploy_id else []
    if not events:
        return None
    return time.time() - max(e.at.timestamp() for e in events)
