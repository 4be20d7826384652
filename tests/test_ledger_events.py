"""The ledger is append-only: a record is the fold of its events, and nothing is erased."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from gangway.record import DeployRecord, Event, EventKind, FunctionMove, Outcome
from tasks.ledger import EVENTS, Ledger


def _ledger(tmp_path: Path, secrets: list[str] | None = None) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secrets=secrets)


def _start(ledger: Ledger, record: DeployRecord) -> None:
    data = record.model_dump(mode="json", exclude={"outcome", "message", "finished_at"})
    ledger.append(Event(deploy_id=record.deploy_id, kind=EventKind.STARTED, data=data), "dev")


def test_a_failure_after_the_end_adds_an_event_and_erases_nothing(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    record = DeployRecord(env="dev", commit_sha="a" * 40)
    _start(ledger, record)
    moved = {"report": FunctionMove(name="fn", version_before="2").model_dump(mode="json")}
    for kind, data in [
        (EventKind.OBSERVED, {"schema_before": "r1", "functions": moved}),
        (EventKind.STEP, {"name": "deploy", "status": "passed", "seconds": 1.0}),
        (EventKind.MOVING, {"functions": ["report"]}),
        (
            EventKind.RESTORED,
            {"result": "verified", "functions": {"report": {"to": "2", "verified": True}}},
        ),
        (EventKind.FINISHED, {"outcome": "rolled-back", "message": "rolled back at bake"}),
        # What the old ledger did when releasing the lock raised: rewrote the record.
        (
            EventKind.FINISHED,
            {"outcome": "failed", "message": "failed at observe; nothing changed"},
        ),
    ]:
        ledger.append(Event(deploy_id=record.deploy_id, kind=kind, data=data), "dev")
    found = ledger.get(record.deploy_id)
    assert found is not None
    assert found.outcome is Outcome.ROLLED_BACK and found.message == "rolled back at bake"
    assert [s.name for s in found.steps] == ["deploy"]
    assert found.functions["report"].alias_moved and found.functions["report"].restored_to == "2"
    assert "failed at observe" in found.notes[-1]
    assert len(ledger.events(record.deploy_id)) == 7


def test_events_are_never_updated_and_secrets_never_stored(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, secrets=["hunter2-secret"])
    record = DeployRecord(env="dev", commit_sha="b" * 40, notes=["password hunter2-secret"])
    _start(ledger, record)
    with ledger.engine.connect() as conn:
        before = conn.execute(sa.select(EVENTS)).all()
    ledger.write(record.model_copy(update={"outcome": Outcome.FAILED, "message": "x"}))
    with ledger.engine.connect() as conn:
        after = conn.execute(sa.select(EVENTS)).all()
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert all("hunter2-secret" not in row.data for row in after)
    assert json.loads(after[0].data)["notes"] == ["password ***"]


def test_running_is_what_has_no_ending_and_recovery_closes_it(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    killed = DeployRecord(env="dev", commit_sha="c" * 40)
    other_env = DeployRecord(env="prod", commit_sha="c" * 40)
    done = DeployRecord(env="dev", commit_sha="d" * 40)
    for r in (killed, done):
        _start(ledger, r)
    ledger.append(
        Event(
            deploy_id=other_env.deploy_id,
            kind=EventKind.STARTED,
            data=other_env.model_dump(mode="json"),
        ),
        "prod",
    )
    ledger.write(done.model_copy(update={"outcome": Outcome.SUCCEEDED}))
    assert [r.deploy_id for r in ledger.running("dev")] == [killed.deploy_id]
    ledger.append(
        Event(
            deploy_id=killed.deploy_id,
            kind=EventKind.RECOVERED,
            data={
                "result": "verified",
                "by": "recovery",
                "outcome": "interrupted",
                "message": "the deploy process died; recovery restored its aliases",
            },
        ),
        "dev",
    )
    assert ledger.running("dev") == []
    closed = ledger.get(killed.deploy_id)
    assert closed is not None and closed.outcome is Outcome.INTERRUPTED
    assert closed.rollback == {"result": "verified", "by": "recovery"}
    assert [r.deploy_id for r in ledger.by_sha("c" * 7, env="dev")] == [killed.deploy_id]


def test_records_of_the_pre_event_ledger_are_imported_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    old = DeployRecord(
        env="dev", commit_sha="e" * 40, outcome=Outcome.SUCCEEDED, image_digest="sha256:" + "1" * 64
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE gangway_deploys (deploy_id VARCHAR(32) PRIMARY KEY, "
                "record TEXT NOT NULL)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO gangway_deploys VALUES (:i, :r)"),
            {"i": old.deploy_id, "r": old.model_dump_json()},
        )
    Ledger(url)
    ledger = Ledger(url)  # opened twice: still one copy
    assert len(ledger.events(old.deploy_id)) == 1
    assert [r.deploy_id for r in ledger.by_digest(old.image_digest or "")] == [old.deploy_id]
    assert ledger.get(old.deploy_id) == old
