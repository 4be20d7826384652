"""Recovery of abandoned deploys: traffic a dead process left moved goes back, on record.

An attempt is abandoned when its record is still open (the process was killed) or its rollback
FAILED (AWS did not answer within the restore window). Recovery restores its moved aliases with
the same rollback the executor uses and appends a ``recovered`` event. It runs under the
environment's deploy lock, so no open record can belong to a live deploy.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.states import Crashed

from flows import rollback
from gangway.config import DeployConfig
from gangway.record import TRAFFIC_KINDS, DeployRecord, Event, EventKind, Outcome
from tasks.lambda_read import AliasState
from tasks.ledger import Ledger


def close_flow_run(flow_run_id: str | None) -> str:
    """Mark a dead deploy's Prefect flow run Crashed (a killed process never reports its end)."""
    if not flow_run_id:
        return "no flow run to close"
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return f"flow run {flow_run_id} already {run.state.name}"
            client.set_flow_run_state(
                UUID(flow_run_id),
                Crashed(message="the deploy process died; a later deploy closed it"),
                force=True,
            )
    except Exception as exc:  # the ledger is the record; Prefect's view is best effort
        return f"flow run {flow_run_id} not closed: {type(exc).__name__}: {str(exc)[:200]}"
    return f"flow run {flow_run_id} marked Crashed"


def pending_recovery(ledger: Ledger, env: str, service: str | None = None) -> list[DeployRecord]:
    """Attempts whose aliases may still be off their previous versions.

    Killed mid-flight (still open), or whose rollback FAILED. Only records newer than the last
    success can be pending: every deploy runs this recovery first, under the lock, and
    succeeds only after it.
    """
    pending = ledger.running(env, service)
    for record in ledger.recent(env, limit=50, service=service):
        if record.kind not in TRAFFIC_KINDS:  # prune, unlock: no alias moved, nothing to stop at
            continue
        if record.outcome is Outcome.SUCCEEDED:
            break
        rollback_ = record.rollback or {}
        if record.outcome is not Outcome.RUNNING and rollback_.get("result") == "FAILED":
            pending.append(record)
    return pending


def recover_abandoned(config: DeployConfig, ledger: Ledger, by: str) -> list[DeployRecord]:
    """Put abandoned attempts' moved aliases back and close their records; returns them."""
    closed = []
    alias = config.environment.alias
    for record in pending_recovery(ledger, config.environment.name, config.service.name):
        killed = record.outcome is Outcome.RUNNING
        moved = {
            k: m for k, m in record.functions.items() if m.alias_moved and m.version_before
        }
        previous = {
            m.name: AliasState(name=alias, version=str(m.version_before)) for m in moved.values()
        }
        result = rollback.restore(config, moved, previous, by="recovery")
        result["actor"] = by
        if killed:
            result["outcome"] = Outcome.INTERRUPTED.value
            result["message"] = f"the deploy process died; {by} restored its aliases"
            ledger.append(
                Event(
                    deploy_id=record.deploy_id,
                    kind=EventKind.NOTE,
                    data={"text": close_flow_run(record.flow_run_id)},
                ),
                record.env,
            )
        else:
            result["message"] = f"{by} restored its aliases"
        ledger.append(
            Event(deploy_id=record.deploy_id, kind=EventKind.RECOVERED, data=result), record.env
        )
        found = ledger.get(record.deploy_id)
        assert found is not None
        closed.append(found)
    return closed
