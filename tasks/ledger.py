"""The pipeline → ledger boundary: a durable record of every deploy, outside Prefect's database.

One row per deploy attempt, written when it starts and rewritten at every step, so a killed
process still leaves its attempt (and the alias versions it may have moved) on record. The
store is any SQLAlchemy URL (``GANGWAY_LEDGER_URL``; default a SQLite file in GANGWAY_HOME),
so a team can share one MySQL-backed ledger. Records are scrubbed of secrets before writing.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from gangway.config import gangway_home
from gangway.errors import GangwayError
from gangway.evidence import GateResult
from gangway.redact import scrub


class LedgerError(GangwayError):
    """The ledger store could not be read or written."""

    boundary = "ledger"


class Outcome(StrEnum):
    """How a deploy attempt ended (RUNNING until it does)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    BLOCKED = "blocked"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    REFUSED = "refused"  # bad input: refused before any side effect


class FunctionMove(BaseModel):
    """One function's versions around a deploy."""

    name: str
    version_before: str | None = None
    version_after: str | None = None
    image_before: str | None = None
    image_after: str | None = None
    alias_moved: bool = False
    restored_to: str | None = None
    restore_verified: bool | None = None


class StepRecord(BaseModel):
    """A step as it ran: its status and how long it took."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


class DeployRecord(BaseModel):
    """The artifact chain of one deploy: SHA → digest → versions → schema → gate evidence."""

    deploy_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    kind: str = "deploy"
    env: str
    commit_sha: str
    dirty: bool = False
    image_ref: str | None = None
    image_digest: str | None = None
    schema_before: str | None = None
    schema_after: str | None = None
    functions: dict[str, FunctionMove] = Field(default_factory=dict)
    gates: list[GateResult] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    traffic: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome = Outcome.RUNNING
    trigger: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    message: str = ""
    notes: list[str] = Field(default_factory=list)
    actor: str = Field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


METADATA = sa.MetaData()
DEPLOYS = sa.Table(
    "gangway_deploys",
    METADATA,
    sa.Column("deploy_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("env", sa.String(32), nullable=False, index=True),
    sa.Column("commit_sha", sa.String(64), nullable=False, index=True),
    sa.Column("image_digest", sa.String(80), nullable=True, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("record", sa.Text, nullable=False),
)


def ledger_url() -> str:
    """$GANGWAY_LEDGER_URL, or a SQLite file under GANGWAY_HOME."""
    url = os.environ.get("GANGWAY_LEDGER_URL")
    if url:
        return url
    home = gangway_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(home) / 'ledger.sqlite3'}"


class Ledger:
    """Read and write deploy records."""

    def __init__(self, url: str | None = None, secrets: list[str] | None = None) -> None:
        self.url = url or ledger_url()
        self.secrets = secrets or []
        try:
            self.engine = sa.create_engine(self.url)
            METADATA.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise self._error("opening", exc) from exc

    @property
    def safe_url(self) -> str:
        """The store's URL with any password hidden."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def _error(self, doing: str, exc: Exception) -> LedgerError:
        return LedgerError(
            f"{doing} the deploy ledger failed",
            expected=f"a writable ledger at {self.safe_url}",
            found=f"{type(exc).__name__}: {exc}"[:400],
            remedy="fix GANGWAY_LEDGER_URL or the permissions of GANGWAY_HOME",
        )

    def save(self, record: DeployRecord) -> DeployRecord:
        """Insert or replace the record (scrubbed of secrets); returns what was stored."""
        clean = DeployRecord.model_validate(scrub(record.model_dump(mode="json"), self.secrets))
        row = {
            "deploy_id": clean.deploy_id,
            "kind": clean.kind,
            "env": clean.env,
            "commit_sha": clean.commit_sha,
            "image_digest": clean.image_digest,
            "outcome": clean.outcome.value,
            "started_at": clean.started_at.replace(tzinfo=None),
            "finished_at": clean.finished_at.replace(tzinfo=None) if clean.finished_at else None,
            "record": clean.model_dump_json(),
        }
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(
                    DEPLOYS.update().where(DEPLOYS.c.deploy_id == clean.deploy_id).values(**row)
                ).rowcount
                if not updated:
                    conn.execute(DEPLOYS.insert().values(**row))
        except SQLAlchemyError as exc:
            raise self._error("writing", exc) from exc
        return clean

    def _query(self, where: Any, limit: int) -> list[DeployRecord]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(DEPLOYS.c.record)
                    .where(where)
                    .order_by(DEPLOYS.c.started_at.desc())
                    .limit(limit)
                ).all()
        except SQLAlchemyError as exc:
            raise self._error("reading", exc) from exc
        return [DeployRecord.model_validate(json.loads(r[0])) for r in rows]

    def get(self, deploy_id: str) -> DeployRecord | None:
        """One record by id."""
        found = self._query(DEPLOYS.c.deploy_id == deploy_id, 1)
        return found[0] if found else None

    def by_id_prefix(self, prefix: str, limit: int = 20) -> list[DeployRecord]:
        """Records whose deploy id starts with prefix (``LIKE 'prefix%'``), newest first."""
        # autoescape: a '%' or '_' typed by the user is a character, not a wildcard.
        return self._query(DEPLOYS.c.deploy_id.startswith(prefix, autoescape=True), limit)

    def by_sha(
        self, commit_sha: str, env: str | None = None, limit: int = 50
    ) -> list[DeployRecord]:
        """Records of a commit (a prefix of 7+ characters works), newest first."""
        where = (
            DEPLOYS.c.commit_sha.startswith(commit_sha)
            if len(commit_sha) < 40
            else (DEPLOYS.c.commit_sha == commit_sha)
        )
        if env:
            where = sa.and_(where, DEPLOYS.c.env == env)
        return self._query(where, limit)

    def by_digest(self, digest: str, limit: int = 50) -> list[DeployRecord]:
        """Records that carried an image digest, newest first."""
        return self._query(DEPLOYS.c.image_digest == digest, limit)

    def recent(self, env: str | None = None, limit: int = 20) -> list[DeployRecord]:
        """The newest records (of one environment), newest first."""
        where = DEPLOYS.c.env == env if env else sa.true()
        return self._query(where, limit)

    def running(self, env: str) -> list[DeployRecord]:
        """Attempts on env still marked running (a live deploy, or one that was killed)."""
        return self._query(
            sa.and_(DEPLOYS.c.env == env, DEPLOYS.c.outcome == Outcome.RUNNING.value), 20
        )
