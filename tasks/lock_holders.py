"""Who holds a MySQL named deploy lock: the holder's identity, written when the lock is taken.

MySQL says only which connection holds a named lock (IS_USED_LOCK), and a session variable
of that connection cannot be read from another one. So the taker appends one row here, in the
ledger store: lock name, the server's start time, the connection id, host, pid, deploy id.
Rows are appended, never updated (rows older than RETENTION_S are dropped): a connection id
is unique within one server lifetime, so (name, server start, connection id) names exactly
one taking, and a row left by an earlier holder can never be mistaken for the current one.
`gangway unlock` reads it to prove the holder gone before it kills the connection.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from tasks.ledger import METADATA, Ledger, LedgerError

HOLDERS = sa.Table(
    "gangway_lock_holders",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    # Epoch seconds the MySQL server started (its own clock): a restart reuses connection ids.
    # Double, not Float: a MySQL FLOAT keeps an epoch only to about two minutes.
    sa.Column("server_started", sa.Double, nullable=False),
    sa.Column("connection_id", sa.BigInteger, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("deploy_id", sa.String(64), nullable=False),
    sa.Column("taken_at", sa.Double, nullable=False),  # epoch seconds, the holder's clock
)
# Uptime is whole seconds and the two reads are not atomic: starts this close are one start.
SERVER_START_TOLERANCE_S = 3.0
# Rows of takings older than this are dropped when the lock is next taken (a reconciler takes
# it every minute). A lock still held that long loses its row: unlock then refuses (safe).
RETENTION_S = 7 * 24 * 3600.0
# A pid whose process started this long after the lock was taken cannot be its holder.
PID_REUSE_MARGIN_S = 2.0
_LEASE_HOLDER = re.compile(r"^(?P<host>\S+) pid (?P<pid>\d+)$")


@dataclass(frozen=True)
class Holder:
    """The recorded taker of a named lock."""

    name: str
    connection_id: int
    host: str
    pid: int
    deploy_id: str
    taken_at: float

    def describe(self) -> str:
        """e.g. 'deploy 3f2a… on host-a pid 4242 over MySQL connection 17'."""
        who = f"deploy {self.deploy_id}" if self.deploy_id else "an unnamed holder"
        return f"{who} on {self.host} pid {self.pid} over MySQL connection {self.connection_id}"


def server_started(conn: sa.Connection) -> float:
    """When the MySQL server behind conn started, in epoch seconds of its own clock."""
    now = float(conn.execute(sa.text("SELECT UNIX_TIMESTAMP()")).scalar() or 0)
    row = conn.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Uptime'")).first()
    return now - float(row[1]) if row else 0.0


def register(
    ledger: Ledger, name: str, conn: sa.Connection, deploy_id: str, pid: int | None = None
) -> Holder:
    """Append the holder of the named lock conn holds (this process unless pid is given)."""
    holder = Holder(
        name=name,
        connection_id=int(conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar() or 0),
        host=socket.gethostname(),
        pid=os.getpid() if pid is None else pid,
        deploy_id=deploy_id,
        taken_at=time.time(),
    )
    started = server_started(conn)
    try:
        with ledger.engine.begin() as store:
            store.execute(HOLDERS.insert().values(server_started=started, **holder.__dict__))
            store.execute(
                HOLDERS.delete().where(
                    HOLDERS.c.name == name, HOLDERS.c.taken_at < holder.taken_at - RETENTION_S
                )
            )
    except SQLAlchemyError as exc:
        raise LedgerError(
            "recording the deploy lock's holder failed",
            expected=f"a writable ledger store at {ledger.safe_url} (it names the holder of "
            f"{name!r} so that `gangway unlock` can prove it gone)",
            found=f"{type(exc).__name__}: {str(exc)[:300]}",
            remedy="fix GANGWAY_LEDGER_URL or the permissions of GANGWAY_HOME",
        ) from exc
    return holder


def find(ledger: Ledger, name: str, connection_id: int, started: float) -> Holder | None:
    """The registered taker of name over connection_id in this server lifetime, if any."""
    query = (
        sa.select(HOLDERS)
        .where(
            HOLDERS.c.name == name,
            HOLDERS.c.connection_id == connection_id,
            HOLDERS.c.server_started.between(
                started - SERVER_START_TOLERANCE_S, started + SERVER_START_TOLERANCE_S
            ),
        )
        .order_by(HOLDERS.c.id.desc())
        .limit(1)
    )
    with ledger.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Holder(
        name=row.name,
        connection_id=int(row.connection_id),
        host=row.host,
        pid=int(row.pid),
        deploy_id=row.deploy_id,
        taken_at=float(row.taken_at),
    )


def parse_lease_holder(text: str) -> tuple[str, int] | None:
    """(host, pid) of a lease's holder string 'host pid N', or None when it is not one."""
    match = _LEASE_HOLDER.match(text.strip())
    return (match["host"], int(match["pid"])) if match else None


def process_gone(host: str, pid: int, taken_at: float | None = None) -> str | None:
    """Why the process host/pid is proven gone, or None when it may be alive (or is elsewhere).

    Only a process on this host can be checked. A pid that exists but whose process started
    after taken_at was reused: the holder itself is gone.
    """
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"no process {pid} exists on {host}"
    except PermissionError:  # it exists, under another user
        pass
    if _process_state(pid) == "Z":
        return f"process {pid} on {host} has exited (a zombie its parent has not reaped)"
    if taken_at is not None:
        started = _process_started(pid)
        if started is not None and started > taken_at + PID_REUSE_MARGIN_S:
            return (
                f"pid {pid} on {host} is a process started {started - taken_at:.0f}s after the "
                "lock was taken (the pid was reused; its holder is gone)"
            )
    return None


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the parenthesised command name ([] when unreadable)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _process_state(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[0] if fields else ""


def _process_started(pid: int) -> float | None:
    """Epoch seconds pid started (Linux /proc), None when it cannot be read."""
    fields = _stat_fields(pid)
    if len(fields) < 20:
        return None
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    # starttime is field 22 of stat: index 19 after the command name.
    return boot + float(fields[19]) / os.sysconf("SC_CLK_TCK")
