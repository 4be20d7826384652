"""What the ledger says should run: where gangway last left each alias, and the open moves.

Pure over DeployRecords (newest first): a deploy, promotion or rollback that succeeded left the
alias on its new version; an attempt whose move was restored left it on the restored version.
A recorded promotion is therefore not drift; an alias elsewhere is. A record still open
(RUNNING, its process gone or alive) whose alias move was never restored is a stranded deploy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gangway.record import TRAFFIC_KINDS, DeployRecord, FunctionMove, Outcome
from tasks.drift_compare import ExpectedRouting, StrandedMove


def _digest(image: str | None) -> str | None:
    if image and "@" in image:
        return image.rpartition("@")[2]
    return None


def _left(record: DeployRecord, move: FunctionMove) -> tuple[str, str | None] | None:
    """(version, digest) the record left the alias on, or None when it says nothing."""
    if move.restored_to and move.restore_verified is not False:
        return move.restored_to, _digest(move.image_before)
    if record.outcome is Outcome.SUCCEEDED and move.version_after:
        return move.version_after, _digest(move.image_after) or record.image_digest
    if record.outcome is Outcome.SUCCEEDED and move.version_before and not move.alias_moved:
        return move.version_before, _digest(move.image_before)
    return None


def expected_routing(
    keys: Iterable[str], records: Sequence[DeployRecord]
) -> dict[str, ExpectedRouting]:
    """Per function key, where the newest settled traffic record left the alias."""
    settled = [r for r in records if r.kind in TRAFFIC_KINDS and r.outcome is not Outcome.RUNNING]
    result: dict[str, ExpectedRouting] = {}
    for key in keys:
        result[key] = ExpectedRouting(None, None, None, None)
        for record in settled:
            move = record.functions.get(key)
            left = _left(record, move) if move is not None else None
            if left is not None:
                result[key] = ExpectedRouting(left[0], left[1], record.deploy_id, record.kind)
                break
    return result


def stranded_moves(running: Sequence[DeployRecord]) -> list[StrandedMove]:
    """Every function move of an open record that left the alias moved and not restored."""
    return [
        StrandedMove(
            deploy_id=record.deploy_id,
            kind=record.kind,
            key=key,
            version_before=move.version_before,
            version_after=move.version_after,
        )
        for record in running
        if record.kind in TRAFFIC_KINDS
        for key, move in record.functions.items()
        if move.alias_moved and not move.restored_to
    ]
