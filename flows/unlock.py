"""`gangway unlock`: break glass on a stuck deploy lock, only when its holder is proven gone.

The proof and the clear are tasks/lock_clear.py's. After a clear (or when the lock was already
free) the same recovery a deploy and the reconciler run is run here, under the freshly taken
lock, so the dead holder's open record is closed and its moved aliases are put back now, not at
the next deploy. Every attempt, cleared or refused, is one ledger record of kind "unlock" with
who, why, what was cleared and the proof (or why it was refused).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flows.recovery import recover_abandoned
from gangway.config import DeployConfig
from gangway.errors import ConfigError, GangwayError
from gangway.record import DeployRecord, Outcome
from tasks.env_lock import DeployLockError, deploy_lock
from tasks.lease_lock import LEASE_TTL_S
from tasks.ledger import Ledger
from tasks.lock_clear import Verdict, clear_if_abandoned

KIND = "unlock"


class UnlockRefused(GangwayError):
    """The lock's holder is not proven gone: nothing was cleared."""

    boundary = "orchestration"


@dataclass
class UnlockResult:
    """The verdict, the recovery that followed, and the record that keeps both."""

    verdict: Verdict
    record: DeployRecord
    recovery: list[str] = field(default_factory=list)

    def refusal(self) -> UnlockRefused:
        """The refusal as an error naming the holder (for a refused verdict)."""
        v = self.verdict
        later = (
            f"a dead holder's lease expires within {LEASE_TTL_S:.0f}s"
            if v.kind == "lease"
            else "a dead holder's lock is cleared once its process is gone (a holder on this "
            "host) or its connection and record have been idle past the limit named above "
            "(a holder on another host)"
        )
        return UnlockRefused(
            f"the deploy lock of {self.record.env} was not cleared: its holder is not proven gone",
            expected=f"the holder of the {v.kind} {v.name!r} gone (its process or connection "
            "no longer exists, or its lease expired)",
            found=f"held by {v.holder}: {v.why}",
            remedy=f"let that deploy finish; {later}: re-run `gangway unlock` then "
            f"(this attempt is recorded as unlock {self.record.deploy_id})",
        )


def unlock(config: DeployConfig, reason: str) -> UnlockResult:
    """Clear the environment's deploy lock if its holder is proven gone, recover, record."""
    if not reason.strip():
        raise ConfigError(
            "gangway unlock needs a reason",
            expected='--reason "why the lock is believed stuck" (non-empty; it is recorded)',
            found=repr(reason),
            remedy='e.g. --reason "CI runner died mid-deploy"',
        )
    ledger = Ledger(secrets=config.secret_values())
    record_id = uuid.uuid4().hex
    started = datetime.now(UTC)
    notes = [f"reason: {reason.strip()}"]
    try:
        verdict = clear_if_abandoned(config, ledger)
    except GangwayError as exc:
        _record(ledger, config, record_id, started, Outcome.FAILED,
                f"failed: {exc.message}", [*notes, exc.render()[:2000]])
        raise
    notes += [
        f"{verdict.kind} {verdict.name}: {verdict.state}",
        f"holder: {verdict.holder}",
        f"{'refused' if verdict.state == 'refused' else 'proof'}: {verdict.why}",
    ]
    if verdict.state == "refused":
        record = _record(ledger, config, record_id, started, Outcome.BLOCKED,
                         f"refused: held by {verdict.holder}", notes)
        return UnlockResult(verdict, record)
    try:
        recovery = _recover(config, ledger, record_id)
    except GangwayError as exc:
        notes.append(f"recovery failed: {exc.render()[:2000]}")
        _record(ledger, config, record_id, started, Outcome.FAILED,
                f"{verdict.state}; recovery failed: {exc.message}", notes)
        raise
    message = "cleared" if verdict.state == "cleared" else "nothing to clear"
    record = _record(ledger, config, record_id, started, Outcome.SUCCEEDED, message,
                     [*notes, *(f"recovery: {line}" for line in recovery)])
    return UnlockResult(verdict, record, recovery)


def _recover(config: DeployConfig, ledger: Ledger, record_id: str) -> list[str]:
    """Recovery of the dead holder's deploy, under the lock taken afresh (timeout 0)."""
    by = f"unlock {record_id}"
    try:
        with deploy_lock(config, 0, lambda: "a deploy or the reconciler", by):
            closed = recover_abandoned(config, ledger, by=by)
    except DeployLockError:
        return ["a deploy or the reconciler took the lock first; it runs the recovery itself"]
    if not closed:
        return ["nothing abandoned"]
    return [
        f"closed deploy {r.deploy_id} as {r.outcome.value}; aliases "
        f"{(r.rollback or {}).get('result', 'not moved')}"
        for r in closed
    ]


def _record(
    ledger: Ledger,
    config: DeployConfig,
    record_id: str,
    started: datetime,
    outcome: Outcome,
    message: str,
    notes: list[str],
) -> DeployRecord:
    return ledger.write(
        DeployRecord(
            deploy_id=record_id,
            kind=KIND,
            service=config.service.name,
            env=config.environment.name,
            commit_sha="",
            outcome=outcome,
            message=message[:2000],
            notes=notes,
            started_at=started,
            finished_at=datetime.now(UTC),
        )
    )
