"""The reconciler: no deploy stays stranded until a person, or the next deploy, acts.

A deploy killed after it moved traffic (an OOM kill, a CI runner that died) leaves its record
open and its aliases moved. Every deploy repairs that first, under the environment's lock; this
flow runs the very same recovery on a schedule (prefect.yaml: ``reconcile-<env>``, every
minute), so the repair does not wait for a next deploy. It never waits for the lock: a deploy
holding it runs the recovery itself, and two reconcilers (or a reconciler and a deploy)
serialize on it, so no two of them ever move the same alias.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.recovery import recover_abandoned
from gangway.config import load_config
from tasks.env_lock import DeployLockError, deploy_lock
from tasks.ledger import Ledger

RECONCILER = "reconciler"


def run_name() -> str:
    """Flow runs are named from the environment, e.g. ``dev · reconcile``."""
    return f"{flow_run.parameters.get('env')} · reconcile"


@flow(name="reconcile", flow_run_name=run_name, log_prints=True)
def reconcile(env: str, project: str | None = None) -> dict[str, object]:
    """Close the abandoned deploys of env and put their aliases back, unless a deploy holds
    the lock (then that deploy does it). Returns what it found and closed."""
    log = get_run_logger()
    config = load_config(env, project=project)
    ledger = Ledger(secrets=config.secret_values())
    try:
        # timeout 0: a deploy or another reconciler holding the lock recovers by itself.
        with deploy_lock(config, 0, lambda: "a deploy or another reconciler", RECONCILER):
            closed = recover_abandoned(config, ledger, by=RECONCILER)
    except DeployLockError:
        log.info("%s: the deploy lock is held; its holder runs recovery itself", env)
        return {"env": env, "lock": "held", "closed": []}
    for record in closed:
        rollback = record.rollback or {}
        log.warning(
            "%s: closed abandoned deploy %s as %s; rollback %s",
            env, record.deploy_id, record.outcome.value, rollback.get("result", "not needed"),
        )
    if not closed:
        log.info("%s: nothing abandoned", env)
    return {
        "env": env,
        "lock": "taken",
        "closed": [
            {
                "deploy_id": r.deploy_id,
                "outcome": r.outcome.value,
                "rollback": (r.rollback or {}).get("result"),
                "at": (r.rollback or {}).get("at"),
            }
            for r in closed
        ],
    }
