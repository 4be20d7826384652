"""A team's ledger: two processes with the same MySQL GANGWAY_LEDGER_URL (a database of its
own on the stack's MariaDB) see each other's records: what CI wrote, a laptop promotes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rehearsal import mariadb_setup
from rehearsal import stack as rehearsal_stack
from rehearsal.system import LOOPBACK, ports

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[1]

WRITE = """
from gangway.record import DeployRecord, Outcome
from tasks.ledger import Ledger
record = Ledger().write(DeployRecord(
    service="daily-report", env="staging", commit_sha="{sha}", image_digest="{digest}",
    image_ref="127.0.0.1:5000/daily-report@{digest}", outcome=Outcome.SUCCEEDED,
    actor="ci@runner"))
print(record.deploy_id)
"""
READ = """
import json
from datetime import UTC, datetime
from gangway.config import PromotionSpec
from tasks.ledger import Ledger
from tasks.promotion_policy import PromotionFacts, SourceRecord, choose_source
ledger = Ledger()
records = [SourceRecord.of(r) for r in ledger.by_sha("{sha}")
           if r.service == "daily-report" and r.env == "staging"]
facts = PromotionFacts(service="daily-report", sha="{sha}", digest=None, source_env="staging",
    target_env="prod", target=PromotionSpec(), records=tuple(records),
    now=datetime.now(UTC))
found, _ = choose_source(facts)
env = ledger.get(found.deploy_id).env
print(json.dumps({{"digest": found.digest, "env": env, "deploy_id": found.deploy_id}}))
"""


@pytest.fixture
def mysql_ledger() -> Iterator[str]:
    """A fresh database and user on the stack's MariaDB; yields the ledger URL."""
    if not rehearsal_stack.status().component("mariadb").ok:
        pytest.skip("the shared stack's MariaDB is not running")
    name = f"gangway_ledger_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(18)
    admin = mariadb_setup._admin_connection()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            for host in mariadb_setup.USER_HOSTS:
                cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, password))
                cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@%s", (name, host))
        yield f"mysql+pymysql://{name}:{password}@{LOOPBACK}:{ports().mysql}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            for host in mariadb_setup.USER_HOSTS:
                cursor.execute("DROP USER IF EXISTS %s@%s", (name, host))
        admin.close()


def _run(code: str, url: str, home: Path) -> str:
    env = {**os.environ, "GANGWAY_LEDGER_URL": url, "GANGWAY_HOME": str(home),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_two_processes_share_one_mysql_ledger(mysql_ledger: str, tmp_path: Path) -> None:
    sha = secrets.token_hex(20)
    digest = "sha256:" + secrets.token_hex(32)
    # Separate homes: nothing but the ledger URL is shared (no SQLite file to fall back on).
    deploy_id = _run(WRITE.format(sha=sha, digest=digest), mysql_ledger, tmp_path / "ci")
    found = json.loads(_run(READ.format(sha=sha), mysql_ledger, tmp_path / "laptop"))
    assert found == {"digest": digest, "env": "staging", "deploy_id": deploy_id}
    assert not list(tmp_path.rglob("ledger.sqlite3"))
