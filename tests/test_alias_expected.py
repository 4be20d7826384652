"""Where the ledger says gangway left each alias: the reference a deploy's first alias read is
checked against (a read unlike it is re-read through Lambda's stale-read window)."""

from __future__ import annotations

from gangway.record import DeployRecord, FunctionMove, Outcome
from tasks.alias_expected import Left, from_records, left_by
from tasks.lambda_read import AliasState


def _record(outcome: Outcome, **moves: FunctionMove) -> DeployRecord:
    return DeployRecord(
        env="dev", service="svc", commit_sha="a" * 40, outcome=outcome, functions=dict(moves)
    )


def _moved(before: str, after: str, *, restored: bool | None = None) -> FunctionMove:
    return FunctionMove(
        name="f",
        version_before=before,
        version_after=after,
        alias_moved=True,
        restored_to=before if restored else None,
        restore_verified=restored,
    )


def test_a_succeeded_record_left_its_aliases_on_the_new_versions() -> None:
    record = _record(Outcome.SUCCEEDED, api=_moved("4", "5"), worker=FunctionMove(name="w"))
    assert left_by(record) == {"api": Left("5", "4")}


def test_a_verified_restore_left_the_alias_on_the_version_before() -> None:
    record = _record(Outcome.ROLLED_BACK, api=_moved("4", "5", restored=True))
    assert left_by(record) == {"api": Left("4", "5")}


def test_a_moved_alias_neither_succeeded_nor_restored_is_vouched_for_by_nobody() -> None:
    newest = _record(Outcome.ROLLED_BACK, api=_moved("5", "6", restored=False))
    older = _record(Outcome.SUCCEEDED, api=_moved("4", "5"), worker=_moved("2", "3"))
    # api's newest mover cannot say where it is: the older record must not speak for it.
    assert from_records([newest, older], {"api", "worker"}) == {"worker": Left("3", "2")}


def test_records_that_moved_nothing_and_open_records_are_looked_past() -> None:
    running = _record(Outcome.RUNNING, api=_moved("5", "9"))
    blocked = _record(Outcome.BLOCKED, api=FunctionMove(name="a", version_before="5"))
    recovered = _record(Outcome.INTERRUPTED, api=_moved("5", "7", restored=True))
    older = _record(Outcome.SUCCEEDED, api=_moved("4", "5"), worker=_moved("2", "3"))
    found = from_records([running, blocked, recovered, older], {"api", "worker"})
    assert found == {"api": Left("5", "7"), "worker": Left("3", "2")}


def test_only_a_read_that_could_echo_the_replaced_version_is_suspected() -> None:
    left = Left("5", "4")
    assert not left.maybe_stale(AliasState(name="live", version="5"))
    assert left.maybe_stale(AliasState(name="live", version="4"))  # the write's before
    assert left.maybe_stale(AliasState(name="live", version="4", weights={"5": 0.1}))
    # Anything else was moved outside gangway: taken at once, never waited on.
    assert not left.maybe_stale(AliasState(name="live", version="9"))
    assert not left.maybe_stale(AliasState(name="live", version="5", weights={"9": 0.1}))
