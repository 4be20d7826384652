"""The rollback flow: put an environment back on an earlier succeeded deploy's versions, on demand.

Not flows/rollback.py (the restore every deploy uses when it stops): this is the operator's
command, `gangway rollback`. No rebuild: the target record's published versions are where the
aliases go. Under the environment's deploy lock, after recovery (as a deploy): choose the
target, refuse when its versions were pruned, when it is live already, or when its code's
schema requirement no longer holds (contract migrations are never undone); then the deploy
executor runs a two-step plan, shift traffic (all at once) and smoke, with its guarantee: a
failed smoke puts the aliases back where they were before the rollback. Recorded as its own
kind, with who and why, as append-only events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run

from flows.deploy import (
    after_stop,
    conclude,
    current_flow_run_id,
    lock_holder,
    open_record,
)
from flows.deploy_steps import Observed, Run
from flows.executor import Executor
from flows.recovery import recover_abandoned
from gangway.config import DeployConfig, load_config
from gangway.errors import ConfigError, GangwayError
from gangway.evidence import GateResult
from gangway.plan import Compensation, DeployPlan, PlannedFunction, PlannedStep, StepKind, Traffic
from gangway.record import DeployRecord, EventKind, Outcome
from tasks import lambda_read, migrations, rollback_target, schema_requirement
from tasks.env_lock import HeldLock, deploy_lock
from tasks.lambda_publish import DeployedVersion
from tasks.ledger import Ledger
from tasks.source import SourceRevision

KIND = "rollback"


@dataclass(frozen=True)
class RollbackRequest:
    """A checked rollback request: configuration, why, and the named target (if any)."""

    config: DeployConfig
    reason: str
    to: str | None


def validate_rollback(
    env: str, reason: str, to: str | None = None, project: str | None = None
) -> RollbackRequest:
    """Check the inputs before any side effect: the reason, the environment, a named target
    (it must exist and be a succeeded deploy of this service here). Raises ConfigError."""
    if not reason or not reason.strip():
        raise ConfigError(
            "a rollback needs a reason",
            expected='--reason "why", kept on the ledger record with who rolled back',
            found="an empty reason",
            remedy='pass --reason "…" (e.g. the incident or the symptom)',
        )
    config = load_config(env, project=project)
    if not config.smoke:
        raise ConfigError(
            "the service declares no smoke cases",
            expected="at least one [[smoke]] case: without one nothing proves the rolled-back "
            "versions work",
            found="none",
            remedy="add [[smoke]] cases to service.toml",
        )
    if to:
        rollback_target.resolve_ref(Ledger(secrets=config.secret_values()), config, to)
    return RollbackRequest(config, reason.strip(), to or None)


def record_rollback_refusal(
    env: str,
    exc: GangwayError,
    service: str = "",
    target: DeployRecord | None = None,
    reason: str = "",
    gates: list[GateResult] | None = None,
    flow_run_id: str | None = None,
) -> DeployRecord:
    """A refused rollback is on record too: nothing moved, and why not."""
    now = datetime.now(UTC)
    notes = [f"reason: {reason}"] if reason else []
    if target is not None:
        notes.append(f"target: deploy {target.deploy_id}")
    return Ledger().write(
        DeployRecord(
            kind=KIND,
            env=env,
            service=service,
            commit_sha=target.commit_sha if target else "",
            image_digest=target.image_digest if target else None,
            gates=gates or [],
            outcome=Outcome.REFUSED,
            trigger={"step": "rollback checks", "error": exc.render()[:2000], "checks": []},
            message="refused: rollback checks; nothing changed",
            notes=notes,
            started_at=now,
            finished_at=now,
            flow_run_id=flow_run_id,
            traffic={"rollback_to": target.deploy_id} if target else {},
        )
    )


def run_name() -> str:
    """Flow runs are named from the environment, e.g. ``prod · rollback``."""
    to = flow_run.parameters.get("to")
    return f"{flow_run.parameters.get('env')} · rollback" + (f" to {str(to)[:8]}" if to else "")


def _plan(config: DeployConfig, target: DeployRecord, live: dict[str, lambda_read.LiveFunction],
          current: str | None) -> DeployPlan:
    """Two steps of the deploy plan: every alias to the target's version at once, then smoke."""
    alias = config.environment.alias
    restore = Compensation.RESTORE_ALIASES
    steps = (
        PlannedStep(
            StepKind.SHIFT_TRAFFIC,
            "deployment",
            f"alias {alias}: all at once to deploy {target.deploy_id[:12]}'s versions",
            compensation=restore,
            moves_traffic=True,
            retries=3,
        ),
        PlannedStep(
            StepKind.SMOKE,
            "deployment",
            f"{len(config.smoke)} cases through {alias}: "
            + ", ".join(c.name for c in config.smoke),
            compensation=restore,
            gate=True,
            timeout_s=900,
        ),
    )
    return DeployPlan(
        env=config.environment.name,
        commit_sha=target.commit_sha,
        dirty=target.dirty,
        image_repository=config.image_repository,
        image_tag=target.image_digest or "",
        traffic=Traffic(),
        allow_destructive=False,
        schema_current=current,
        schema_head=current,
        pending_migrations=(),
        functions=tuple(
            PlannedFunction(k, fn.name, fn.alias.name, fn.alias.version, fn.image_uri)
            for k, fn in live.items()
        ),
        smoke_cases=tuple(c.name for c in config.smoke),
        steps=steps,
        evidence="content",
    )


def check_target(
    config: DeployConfig, ledger: Ledger, target: DeployRecord
) -> tuple[list[str], GateResult | None]:
    """Refuse (ConfigError) a target whose versions are gone or whose schema requirement the
    live schema no longer meets; returns notes for the record and the schema evidence."""
    gone = rollback_target.pruned_versions(config, target)
    if gone:
        raise ConfigError(
            f"deploy {target.deploy_id}'s versions no longer exist",
            expected="every version the target published, still in Lambda",
            found=f"pruned: {', '.join(gone)}",
            remedy="roll back to a newer deploy (--to), or redeploy its commit "
            f"(gangway deploy --env {config.environment.name} --sha {target.commit_sha[:12]})",
        )
    if config.environment.database is None:
        return ["schema requirement: none (the service declares no database)"], None
    source = target
    # A rollback record ran no verify-columns gate: the code it returned to was checked by
    # the deploy it returned to.
    for _ in range(20):
        back = rollback_target.rolled_back_to(source)
        if schema_requirement.recorded_columns(source) or not back:
            break
        source = ledger.get(back) or source
    columns = schema_requirement.recorded_columns(source)
    if not columns:
        return [
            f"schema requirement: none recorded (deploy {source.deploy_id} ran no verify-columns "
            "check of written columns)"
        ], None
    result = schema_requirement.check_requirement(config, target, columns)
    if result.failures:
        names = ", ".join(c.name for c in result.failures)
        raise SchemaRefused(
            result,
            f"the live schema no longer meets deploy {target.deploy_id[:12]}'s requirement: "
            f"{names}",
            expected="; ".join(c.expected for c in result.failures[:3]),
            found="; ".join(f"{c.name}: {c.found}" for c in result.failures),
            remedy=result.failures[0].remedy,
        )
    return [
        f"schema requirement: {len(result.checks)} columns deploy {source.deploy_id[:12]} "
        "verified still hold"
    ], result


class SchemaRefused(ConfigError):
    """The target's code writes columns the live schema no longer has (or cannot hold)."""

    def __init__(self, result: GateResult, message: str, **kw: str) -> None:
        self.result = result
        super().__init__(message, **kw)


def _attempt(
    opening: DeployRecord, target: DeployRecord, current: DeployRecord | None, reason: str
) -> DeployRecord:
    """The opening attempt (same id) with the target it goes back to."""
    return opening.model_copy(update=dict(
        commit_sha=target.commit_sha,
        dirty=target.dirty,
        image_ref=target.image_ref,
        image_digest=target.image_digest,
        traffic={
            "mode": "all-at-once",
            "canary_percent": 0,
            "bake_s": 0,
            "rollback_to": target.deploy_id,
            "rollback_of": current.deploy_id if current else "",
        },
        notes=[
            f"reason: {reason}",
            f"target: deploy {target.deploy_id} ({target.kind} of {target.commit_sha[:12]}, "
            f"{target.started_at:%Y-%m-%d %H:%M} UTC)",
            f"was live: {current.deploy_id if current else 'nothing gangway recorded'}",
        ],
    ))


class RollbackExecutor(Executor):
    """The deploy executor, with a rollback's words for its success."""

    def __init__(self, run: Run, target: DeployRecord) -> None:
        super().__init__(run)
        self.target = target

    def finish(self, outcome: Outcome, message: str) -> None:
        """Record the outcome; a success says which deploy the environment is back on."""
        if outcome is Outcome.SUCCEEDED:
            message = (
                f"rolled back to deploy {self.target.deploy_id[:12]} "
                f"(commit {self.target.commit_sha[:12]}) and verified"
            )
        super().finish(outcome, message)


def _execute(
    config: DeployConfig,
    ledger: Ledger,
    request: RollbackRequest,
    opening: DeployRecord,
    held: HeldLock,
) -> DeployRecord:
    """Under the lock: choose and check the target, open the record, run the plan."""
    env, service = config.environment.name, config.service.name
    live = lambda_read.describe_functions(config)
    target: DeployRecord | None = None
    try:
        target, current = rollback_target.choose_target(ledger, config, live, request.to)
        notes, evidence = check_target(config, ledger, target)
    except ConfigError as exc:
        gates = [exc.result] if isinstance(exc, SchemaRefused) else []
        record_rollback_refusal(
            env, exc, service, target, request.reason, gates, current_flow_run_id()
        )
        raise
    schema_now = (
        migrations.plan_migrations(config).current if config.migrations_dir is not None else None
    )
    observed = Observed(
        live=live, migrations=migrations.MigrationPlan(current=schema_now, head=None, pending=())
    )
    attempt = _attempt(opening, target, current, request.reason)
    plan = _plan(config, target, live, schema_now)
    started = open_record(ledger, attempt, observed)
    run = Run(
        config,
        SourceRevision(sha=target.commit_sha, dirty=target.dirty),
        plan,
        observed,
        ledger,
        started,
        fence=held.verify,
    )
    for text in notes:
        run.note(text)
    if evidence is not None:
        run.emit(EventKind.GATE, evidence.model_dump(mode="json"))
    run.versions = {
        key: DeployedVersion(
            key=key,
            name=fn.name,
            version=str(target.functions[key].version_after),
            image_uri=target.functions[key].image_after or "",
            code_sha256="",
            reused=True,
            previous_alias=fn.alias,
        )
        for key, fn in live.items()
    }
    run.emit(
        EventKind.VERSIONS,
        {
            "functions": {
                k: {"name": v.name, "version_after": v.version, "image_after": v.image_uri}
                for k, v in run.versions.items()
            }
        },
    )
    if schema_now is not None:
        # Nothing migrates in a rollback: the schema after is the schema before, said so.
        run.emit(EventKind.SCHEMA, {"schema_after": schema_now})
    return RollbackExecutor(run, target).execute()


@flow(name="rollback", flow_run_name=run_name, log_prints=True)
def roll_back(
    env: str, reason: str, to: str | None = None, project: str | None = None
) -> DeployRecord:
    """Move every alias of env back to the versions of the previous succeeded deploy (or the
    one `to` names), without rebuilding; smoke through the alias; record who and why."""
    try:
        request = validate_rollback(env, reason, to, project)
    except ConfigError as exc:
        record_rollback_refusal(env, exc, reason=reason or "", flow_run_id=current_flow_run_id())
        raise
    config = request.config
    ledger = Ledger(secrets=config.secret_values())
    service = config.service.name
    # Opened only once the target is known (under the lock); an error before that is
    # recorded under this id (flows/deploy.after_stop).
    opening = DeployRecord(
        kind=KIND, env=env, service=service, commit_sha="", flow_run_id=current_flow_run_id(),
        notes=[f"reason: {request.reason}"],
    )
    held: HeldLock | None = None
    record: DeployRecord | None = None
    stage = "deploy lock"
    try:
        timeout_s = config.environment.deploy.lock_timeout_s
        with deploy_lock(
            config, timeout_s, lambda: lock_holder(ledger, env, service), opening.deploy_id
        ) as held:
            stage = "recovery"
            for closed in recover_abandoned(config, ledger, by=f"rollback in {env}"):
                print(f"closed abandoned deploy {closed.deploy_id}: {closed.rollback}")
            stage = "rollback"
            record = _execute(config, ledger, request, opening, held)
            stage = "deploy lock release"
    except ConfigError:
        raise  # a refusal: on record already, nothing moved
    except GangwayError as exc:
        record = after_stop(ledger, opening, record, stage, exc)
    return conclude(
        ledger, opening, record, held, "rollback",
        expected="the target's versions to pass the smoke cases",
        remedy="the aliases were put back where they were before the rollback; see the ledger",
    )


# prefect.yaml's entrypoint: the stack names a deployment's flow after its entrypoint's
# function (rehearsal/prefect_worker.deployment_names), and this flow is named "rollback".
rollback = roll_back
