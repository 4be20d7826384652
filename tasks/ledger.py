"""The pipeline → ledger boundary: append-only deploy events, kept outside Prefect's database.

Every fact about a deploy attempt (its start, each step and gate, each traffic move and restore,
its end) is one appended row; nothing is ever updated or deleted. A record is the fold of its
events (gangway/record.py), so a killed process still leaves everything it did on record, and a
failure while finishing can add an event but never erase one. The store is any SQLAlchemy URL
(``GANGWAY_LEDGER_URL``; default a SQLite file in GANGWAY_HOME), so a team can share one
MySQL-backed ledger. Events are scrubbed of secrets before writing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from gangway.config import gangway_home
from gangway.errors import GangwayError
from gangway.record import DeployRecord, Event, EventKind, Outcome, fold
from gangway.redact import scrub


class LedgerError(GangwayError):
    """The ledger store could not be read or written."""

    boundary = "ledger"


METADATA = sa.MetaData()
EVENTS = sa.Table(
    "gangway_events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deploy_id", sa.String(32), nullable=False, index=True),
    sa.Column("env", sa.String(32), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False, index=True),
    sa.Column("at", sa.DateTime, nullable=False),
    # Copied out of the data so that lookups by commit, digest and outcome are indexed.
    sa.Column("commit_sha", sa.String(64), nullable=True, index=True),
    sa.Column("image_digest", sa.String(80), nullable=True, index=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("data", sa.Text, nullable=False),
)
# The ledger before events: one rewritable row per deploy. Imported once, read-only after.
LEGACY = sa.Table(
    "gangway_deploys",
    sa.MetaData(),
    sa.Column("deploy_id", sa.String(32), primary_key=True),
    sa.Column("record", sa.Text, nullable=False),
)
# Kinds that settle an outcome: an attempt without one of these is still running.
SETTLING = (EventKind.FINISHED.value, EventKind.RECOVERED.value, EventKind.SNAPSHOT.value)


def ledger_url() -> str:
    """$GANGWAY_LEDGER_URL, or a SQLite file under GANGWAY_HOME."""
    url = os.environ.get("GANGWAY_LEDGER_URL")
    if url:
        return url
    home = gangway_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(home) / 'ledger.sqlite3'}"


# A store that is briefly away (a restart, a failover) is waited for, a few seconds at most.
_transient_store = retry(
    retry=retry_if_exception_type(SQLAlchemyError),
    stop=stop_after_delay(5),
    wait=wait_exponential(multiplier=0.1, max=1),
    reraise=True,
)


class Ledger:
    """Append deploy events; read records folded from them."""

    def __init__(self, url: str | None = None, secrets: list[str] | None = None) -> None:
        self.url = url or ledger_url()
        self.secrets = secrets or []
        try:
            self.engine = sa.create_engine(self.url)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_wal)
            METADATA.create_all(self.engine)
            self._import_legacy()
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

    # -- writing ------------------------------------------------------------------------
    def append(self, event: Event, env: str) -> Event:
        """Append one event (scrubbed of secrets); returns what was stored."""
        clean = Event.model_validate(scrub(event.model_dump(mode="json"), self.secrets))
        data = clean.data
        row = {
            "deploy_id": clean.deploy_id,
            "env": env,
            "kind": clean.kind.value,
            "at": clean.at.replace(tzinfo=None),
            "commit_sha": data.get("commit_sha"),
            "image_digest": data.get("image_digest"),
            "outcome": data.get("outcome"),
            "data": json.dumps(data, sort_keys=True),
        }

        @_transient_store
        def insert() -> None:
            with self.engine.begin() as conn:
                conn.execute(EVENTS.insert().values(**row))

        try:
            insert()
        except SQLAlchemyError as exc:
            raise self._error("writing", exc) from exc
        return clean

    def write(self, record: DeployRecord) -> DeployRecord:
        """Put a record made elsewhere on file as events (a refusal; a record a test plants):
        started (with its trigger) if new, then finished if its outcome is final."""
        stored = self.get(record.deploy_id)
        if stored is None:
            start = record.model_dump(mode="json", exclude={"outcome", "message", "finished_at"})
            self.append(
                Event(
                    deploy_id=record.deploy_id,
                    kind=EventKind.STARTED,
                    at=record.started_at,
                    data=start,
                ),
                record.env,
            )
            if record.trigger:
                self.append(
                    Event(deploy_id=record.deploy_id, kind=EventKind.TRIGGER, data=record.trigger),
                    record.env,
                )
        if record.outcome is not Outcome.RUNNING and (
            stored is None or stored.outcome is Outcome.RUNNING
        ):
            self.append(
                Event(
                    deploy_id=record.deploy_id,
                    kind=EventKind.FINISHED,
                    at=record.finished_at or datetime.now(UTC),
                    data={"outcome": record.outcome.value, "message": record.message},
                ),
                record.env,
            )
        found = self.get(record.deploy_id)
        assert found is not None
        return found

    def _import_legacy(self) -> None:
        """Records of the pre-event ledger become one snapshot event each, once."""
        if not sa.inspect(self.engine).has_table(LEGACY.name):
            return
        with self.engine.begin() as conn:
            known = {r[0] for r in conn.execute(sa.select(EVENTS.c.deploy_id).distinct())}
            for deploy_id, text in conn.execute(sa.select(LEGACY.c.deploy_id, LEGACY.c.record)):
                if deploy_id in known:
                    continue
                old = DeployRecord.model_validate(json.loads(text))
                data = old.model_dump(mode="json")
                conn.execute(
                    EVENTS.insert().values(
                        deploy_id=deploy_id,
                        env=old.env,
                        kind=EventKind.SNAPSHOT.value,
                        at=old.started_at.replace(tzinfo=None),
                        commit_sha=old.commit_sha,
                        image_digest=old.image_digest,
                        outcome=old.outcome.value,
                        data=json.dumps(data, sort_keys=True),
                    )
                )

    # -- reading ------------------------------------------------------------------------
    def events(self, deploy_id: str) -> list[Event]:
        """Every event of one attempt, in the order appended."""
        rows = self._rows(
            sa.select(EVENTS.c.deploy_id, EVENTS.c.kind, EVENTS.c.at, EVENTS.c.data)
            .where(EVENTS.c.deploy_id == deploy_id)
            .order_by(EVENTS.c.id)
        )
        return [_event(r) for r in rows]

    def _rows(self, query: Any) -> Sequence[Any]:
        try:
            with self.engine.connect() as conn:
                return conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise self._error("reading", exc) from exc

    def _records(self, where: Any, limit: int) -> list[DeployRecord]:
        """Records whose started (or imported) event matches where, newest first."""
        ids = [
            r[0]
            for r in self._rows(
                sa.select(EVENTS.c.deploy_id)
                .where(sa.and_(EVENTS.c.kind.in_(("started", "snapshot")), where))
                .order_by(EVENTS.c.at.desc(), EVENTS.c.id.desc())
                .limit(limit)
            )
        ]
        if not ids:
            return []
        rows = self._rows(
            sa.select(EVENTS.c.deploy_id, EVENTS.c.kind, EVENTS.c.at, EVENTS.c.data)
            .where(EVENTS.c.deploy_id.in_(ids))
            .order_by(EVENTS.c.id)
        )
        by_id: dict[str, list[Event]] = {}
        for r in rows:
            by_id.setdefault(r[0], []).append(_event(r))
        return [fold(by_id[i]) for i in ids if i in by_id]

    def deploy_ids(self, env: str | None = None) -> list[str]:
        """Every attempt's id (of one environment), oldest first: cheap, nothing folded."""
        where = EVENTS.c.kind.in_(("started", "snapshot"))
        if env:
            where = sa.and_(where, EVENTS.c.env == env)
        query = sa.select(EVENTS.c.deploy_id).where(where).order_by(EVENTS.c.id)
        return [r[0] for r in self._rows(query)]

    def get(self, deploy_id: str) -> DeployRecord | None:
        """One record by id."""
        events = self.events(deploy_id)
        return fold(events) if events else None

    def by_id_prefix(self, prefix: str, limit: int = 20) -> list[DeployRecord]:
        """Records whose deploy id starts with prefix (``LIKE 'prefix%'``), newest first."""
        # autoescape: a '%' or '_' typed by the user is a character, not a wildcard.
        return self._records(EVENTS.c.deploy_id.startswith(prefix, autoescape=True), limit)

    def by_sha(
        self, commit_sha: str, env: str | None = None, limit: int = 50
    ) -> list[DeployRecord]:
        """Records of a commit (a prefix of 7+ characters works), newest first."""
        where = (
            EVENTS.c.commit_sha.startswith(commit_sha, autoescape=True)
            if len(commit_sha) < 40
            else (EVENTS.c.commit_sha == commit_sha)
        )
        if env:
            where = sa.and_(where, EVENTS.c.env == env)
        return self._records(where, limit)

    def by_digest(self, digest: str, limit: int = 50) -> list[DeployRecord]:
        """Records that carried an image digest, newest first."""
        ids = sa.select(EVENTS.c.deploy_id).where(EVENTS.c.image_digest == digest)
        return self._records(EVENTS.c.deploy_id.in_(ids), limit)

    def recent(
        self, env: str | None = None, limit: int = 20, service: str | None = None
    ) -> list[DeployRecord]:
        """The newest records (of one environment, of one service), newest first."""
        found = self._records(EVENTS.c.env == env if env else sa.true(), limit)
        return [r for r in found if of_service(r, service)]

    def running(self, env: str, service: str | None = None) -> list[DeployRecord]:
        """Attempts on env not yet settled (a live deploy, or one that was killed)."""
        settled = sa.select(EVENTS.c.deploy_id).where(EVENTS.c.kind.in_(SETTLING))
        found = self._records(sa.and_(EVENTS.c.env == env, EVENTS.c.deploy_id.not_in(settled)), 20)
        return [r for r in found if r.outcome is Outcome.RUNNING and of_service(r, service)]


def of_service(record: DeployRecord, service: str | None) -> bool:
    """True when record belongs to service (None: any); unnamed old records belong to all."""
    return service is None or record.service in ("", service)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL + synchronous=NORMAL: a committed event survives the process being killed (what a
    # deploy ledger must survive) without an fsync per event; readers never block the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _event(row: Any) -> Event:
    deploy_id, kind, at, data = row
    # Stored naive (SQLite keeps no zone); written as UTC.
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return Event(deploy_id=deploy_id, kind=EventKind(kind), at=at, data=json.loads(data))
