"""`gangway unlock`: refused while the lock's holder lives, accepted once it is proven gone.

Both lock kinds, each held by a real process: a lease in the ledger store (a service without a
database) and the MySQL named lock on the reference service's `prod` database (no concurrent
test deploys to prod). A holder whose process died while its connection lingers (a host that
vanished: MySQL keeps the lock until the TCP connection times out) is simulated by taking the
lock on a connection of this test and recording a pid that no longer exists as its holder.
Every run of the command is a subprocess, as a user runs it; the world is read back after.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from service_repo import DEV_TOML
from sqlalchemy.pool import NullPool

from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.errors import ConfigError
from gangway.record import Event, EventKind, Outcome
from tasks.lease_lock import LEASES, lease_lock, lease_name
from tasks.ledger import Ledger
from tasks.lock_clear import stale_after_s
from tasks.lock_holders import HOLDERS, register
from tasks.migrations import lock_name

SERVICE_TOML = """\
[service]
name = "gw-unlock"

[service.build]
context = "src"
repository = "gw-unlock"

[functions.echo]
handler = "app.handler"
required_env = ["TZ"]
timeout = 10
memory = 256
app_logs = false
"""
LEASE_CHILD = """
import sys, time
from gangway.config import load_config
from tasks.lease_lock import lease_lock
with lease_lock(load_config("dev", project=sys.argv[1]), 5, lambda: "the child"):
    print("held", flush=True)
    time.sleep(600)
"""
NAMED_CHILD = """
import time
from gangway.config import load_config
from tasks.env_lock import deploy_lock
with deploy_lock(load_config("prod"), 5, lambda: "the child", "child-deploy-0001"):
    print("held", flush=True)
    time.sleep(600)
"""


def gangway(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """What to print when an assertion about a run fails."""
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


def holding_child(code: str, *argv: str) -> subprocess.Popen[str]:
    """A process that takes a lock, says so, and sleeps holding it."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "held":
        child.kill()
        pytest.fail(f"the child did not take the lock: {line!r} {child.communicate()[1][-2000:]}")
    return child


def dead_pid() -> int:
    """A pid that existed a moment ago and exists no more (reaped)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(gone.pid, 0)
    return gone.pid


def unlock_records(ledger: Ledger, env: str) -> list[object]:
    """The ledger's unlock records of env, oldest first."""
    return [r for r in reversed(ledger.recent(env, limit=50)) if r.kind == "unlock"]


@pytest.fixture
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ledger store of this test alone (children and the CLI inherit it)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("GANGWAY_LEDGER_URL", url)
    yield url


def test_a_lease_is_cleared_only_once_its_holder_process_is_gone(
    tmp_path: Path, ledger_url: str
) -> None:
    repo = tmp_path / "svc"
    (repo / "src").mkdir(parents=True)
    (repo / "deployments").mkdir()
    (repo / "src" / "Dockerfile").write_text("FROM scratch\n")
    (repo / "deployments" / "service.toml").write_text(SERVICE_TOML)
    (repo / "deployments" / "dev.toml").write_text(DEV_TOML)
    config = load_config("dev", project=repo)
    assert config.environment.database is None
    with pytest.raises(ConfigError, match="needs a reason"):  # bad input: refused, nothing done
        from flows.unlock import unlock

        unlock(config, "   ")
    child = holding_child(LEASE_CHILD, str(repo))
    try:
        args = ("unlock", "--project", str(repo), "--env", "dev")
        refused = gangway(*args, "--reason", "suspected stuck")
        assert refused.returncode == 2, explain(refused)
        assert f"pid {child.pid}" in refused.stderr and "expires in" in refused.stderr
        ledger = Ledger()
        with ledger.engine.connect() as conn:
            row = conn.execute(sa.select(LEASES).where(LEASES.c.name == lease_name(config))).one()
        assert row.holder.endswith(f"pid {child.pid}"), row  # still the child's: not cleared
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # Before expiry: only the missing pid can prove it gone.
        assert row.expires > time.time() + 2, "the lease would have expired: proves nothing"
        cleared = gangway(*args, "--reason", "CI runner killed mid-deploy")
        assert cleared.returncode == 0, explain(cleared)
        assert "cleared the lease" in cleared.stdout
        print(f"\n{refused.stderr}\n{cleared.stdout}")
        assert f"no process {child.pid} exists" in cleared.stdout
        started = time.monotonic()
        with lease_lock(config, 0, lambda: "-") as lease:  # timeout 0: free at once
            lease.verify()
        assert time.monotonic() - started < 2
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    refusal, clear = unlock_records(ledger, "dev")
    assert refusal.outcome is Outcome.BLOCKED and clear.outcome is Outcome.SUCCEEDED
    assert "reason: suspected stuck" in refusal.notes
    assert any(f"pid {child.pid}" in n for n in refusal.notes)
    assert "reason: CI runner killed mid-deploy" in clear.notes
    assert clear.service == "gw-unlock" and clear.env == "dev"


def _used_by(engine: sa.Engine, name: str) -> int | None:
    with engine.connect() as conn:
        held = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
    return None if held is None else int(held)


@pytest.mark.stack
def test_the_named_lock_is_refused_while_held_and_killed_once_its_holder_is_gone(
    stack: object, ledger_url: str
) -> None:
    config: DeployConfig = load_config("prod")
    name = lock_name(config, "deploy")
    engine = sa.create_engine(
        config.database_url(), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    assert _used_by(engine, name) is None, f"{name} is held before the test: prod is in use"
    child = holding_child(NAMED_CHILD)
    stuck: sa.Connection | None = None
    try:
        # 1. A live holder (it checks its lock every heartbeat): refused, naming it.
        held_by = _used_by(engine, name)
        assert held_by is not None
        refused = gangway("unlock", "--env", "prod", "--reason", "looks stuck")
        assert refused.returncode == 2, explain(refused)
        for part in ("deploy child-deploy-0001", f"pid {child.pid}", socket.gethostname(),
                     f"MySQL connection {held_by}", "is alive"):
            assert part in refused.stderr, (part, refused.stderr)
        assert _used_by(engine, name) == held_by, "a refused unlock changed the lock"
        # 2. A killed holder: MySQL frees the lock with its connection; nothing to clear.
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _used_by(engine, name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        free = gangway("unlock", "--env", "prod", "--reason", "after the kill")
        assert free.returncode == 0, explain(free)
        assert "nothing to clear" in free.stdout
        # 3. A holder gone while its connection lingers: the lock is held by a connection of
        # this test, recorded as a dead pid's (and first as a holder on another host).
        ledger = Ledger()
        ledger.append(
            Event(
                deploy_id="stuck-deploy-0002",
                kind=EventKind.STARTED,
                data={"env": "prod", "service": config.service.name, "commit_sha": "0" * 40},
            ),
            "prod",
        )
        stuck = engine.connect()
        assert stuck.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
        stuck_id = int(stuck.execute(sa.text("SELECT CONNECTION_ID()")).scalar() or 0)
        from flows.unlock import unlock

        holder = register(ledger, name, stuck, "stuck-deploy-0002", pid=dead_pid())
        with ledger.engine.begin() as conn:  # the same taking, as a host elsewhere would record
            conn.execute(
                HOLDERS.update().where(HOLDERS.c.connection_id == stuck_id).values(host="far")
            )
        elsewhere = unlock(config, "holder on another host").verdict
        assert elsewhere.state == "refused" and "host is not this one" in elsewhere.why
        with ledger.engine.begin() as conn:
            conn.execute(HOLDERS.update().where(HOLDERS.c.connection_id == stuck_id).values(
                host=holder.host))
        stuck.execute(sa.text("SELECT 1"))  # used just now: not idle, whatever came before
        early = unlock(config, "too early").verdict
        assert early.state == "refused", early
        assert f"no process {holder.pid} exists" in early.why and "used" in early.why
        assert _used_by(engine, name) == stuck_id
        time.sleep(stale_after_s(config) + 1)  # idle as no live holder's connection is
        cleared = gangway("unlock", "--env", "prod", "--reason", "holder host died")
        assert cleared.returncode == 0, explain(cleared)
        for part in ("cleared the named lock", "deploy stuck-deploy-0002",
                     f"no process {holder.pid} exists", f"killed connection {stuck_id}",
                     "closed deploy stuck-deploy-0002 as interrupted"):
            assert part in cleared.stdout, (part, cleared.stdout)
        assert _used_by(engine, name) is None
        print(f"\n{refused.stderr}\n{free.stdout}\n{cleared.stdout}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if stuck is not None:
            try:
                stuck.close()
            except sa.exc.SQLAlchemyError:  # killed by the unlock: already closed
                pass
        engine.dispose()
    dead = ledger.get("stuck-deploy-0002")
    assert dead is not None and dead.outcome is Outcome.INTERRUPTED
    records = unlock_records(ledger, "prod")
    assert [r.outcome for r in records] == [
        Outcome.BLOCKED, Outcome.SUCCEEDED, Outcome.BLOCKED, Outcome.BLOCKED, Outcome.SUCCEEDED
    ]
    assert "reason: holder host died" in records[-1].notes
    assert any(f"killed connection {stuck_id}" in n for n in records[-1].notes)
