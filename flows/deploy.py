"""The deploy flow: one environment, one commit, every boundary crossed in order, with evidence.

build → in-image gate → push → migration lint → migrate → migration applied → verify columns →
config gate → deploy versions → shift traffic → smoke → log scan → ground truth →
(canary: bake → full shift).

The flow accepts the request, takes the environment's lock, recovers what a dead deploy left,
observes the world, plans, and hands the plan to an executor: the real one, or the display
executor for a dry run. Gates before traffic moves block and change nothing; any stop after
it restores the aliases (flows/executor.py). Migrations are expand-only and are not rolled
back. Every attempt is in the ledger as append-only events, whatever its end.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

from prefect import flow
from prefect.context import get_run_context
from prefect.runtime import flow_run

from flows.deploy_steps import Observed, Run
from flows.executor import DeployInterrupted, DisplayExecutor, Executor
from flows.recovery import recover_abandoned
from flows.request import Request, record_refusal, resolve_source, validate_request
from gangway.config import project_root
from gangway.errors import ConfigError, GangwayError, RegistryError
from gangway.plan import DeployPlan, PlannedFunction, Traffic, make_plan
from gangway.record import DeployRecord, Event, EventKind, FunctionMove, Outcome
from tasks import alias_expected, lambda_read, migrations, step_calls
from tasks.env_lock import HeldLock, deploy_lock
from tasks.image_reuse import ReuseDecision
from tasks.ledger import Ledger
from tasks.prefect_task import step

__all__ = [
    "DeployFailed",
    "DeployInterrupted",
    "deploy",
    "observe",
    "plan_deploy",
    "resolve_source",
    "validate_request",
]


class DeployFailed(GangwayError):
    """A deploy that was blocked, rolled back or failed; carries its ledger record."""

    boundary = "deploy"

    def __init__(self, record: DeployRecord, message: str, **kwargs: str) -> None:
        self.record = record
        super().__init__(message, **kwargs)


@step("observe", timeout_s=180, retries=2)
def observe(request: Request, left: dict[str, alias_expected.Left] | None = None) -> Observed:
    """Read the functions, their aliases, the pending migrations, and whether this commit's
    image is already pushed (read-only). left: where the ledger says gangway left each alias
    (an alias read unlike it is re-read through Lambda's stale-read window)."""
    config = request.config
    live = lambda_read.describe_functions(config)
    return Observed(
        live=alias_expected.settled(config, live, left) if left else live,
        # A service without migrations (or without a database) has no schema to read.
        migrations=migrations.plan_migrations(config)
        if config.migrations_dir is not None
        else migrations.MigrationPlan(current=None, head=None, pending=()),
        reuse=step_calls.find_reuse(config, request.revision)
        if request.promoted is None
        else ReuseDecision(None, "promotion: the validated image is pulled"),
    )


def plan_deploy(
    request: Request, observed: Observed, traffic: Traffic, allow_destructive: bool
) -> DeployPlan:
    """The plan from the request and the observed world (pure)."""
    return make_plan(
        request.config,
        commit_sha=request.revision.sha,
        dirty=request.revision.dirty,
        image_tag=request.revision.tag,
        traffic=traffic,
        allow_destructive=allow_destructive,
        schema_current=observed.migrations.current,
        schema_head=observed.migrations.head,
        pending=[(r.id, r.message) for r in observed.migrations.pending],
        functions=[
            PlannedFunction(
                key=key,
                name=fn.name,
                alias=fn.alias.name,
                current_version=fn.alias.version,
                current_image=fn.image_uri,
            )
            for key, fn in observed.live.items()
        ],
        promoted_image=request.promoted.by_digest if request.promoted else "",
        reusable_image=observed.reuse.image.pushed.by_digest if observed.reuse.image else "",
    )


def run_name() -> str:
    """Flow runs are named from environment and commit, e.g. ``dev · 2465360 · deploy``."""
    params = flow_run.parameters
    ref = params.get("sha") or "HEAD"
    try:
        root = project_root(params.get("project"))
        short = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=7", f"{ref}^{{commit}}"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, GangwayError):
        short = str(ref)[:12]
    kind = "dry run" if params.get("dry_run") else "deploy"
    return f"{params.get('env')} · {short} · {kind}"


def current_flow_run_id() -> str | None:
    """The running flow run's id (None outside one)."""
    try:
        return str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:  # outside a flow run there is no id to record
        return None


def lock_holder(ledger: Ledger, env: str, service: str) -> str:
    """Who holds the environment's deploy lock, as the ledger knows it (for a refusal)."""
    running = ledger.running(env, service)
    if not running:
        return "a deploy holding the lock (no running record in this ledger)"
    r = running[0]
    return (
        f"{r.kind} {r.deploy_id} of {r.commit_sha[:12]} by {r.actor}, "
        f"started {r.started_at:%H:%M:%S}"
    )


def attempt_record(request: Request, traffic: Traffic, env: str) -> DeployRecord:
    """The attempt's identity before it starts: who, what, how traffic moves (a promotion
    when the request carries a validated image)."""
    return DeployRecord(
        env=env,
        service=request.config.service.name,
        commit_sha=request.revision.sha,
        dirty=request.revision.dirty,
        traffic={
            "mode": "canary" if traffic.is_canary else "all-at-once",
            "canary_percent": traffic.canary_percent,
            "bake_s": traffic.bake_s,
        },
        flow_run_id=current_flow_run_id(),
        kind="promote" if request.promoted else "deploy",
        image_digest=request.promoted.digest if request.promoted else None,
        notes=[f"promoted the image validated by {request.validated_by}"]
        if request.promoted
        else [],
    )


def open_record(ledger: Ledger, attempt: DeployRecord, observed: Observed) -> DeployRecord:
    """The attempt's first events: who and what, then the world it starts from."""
    ledger.append(
        Event(
            deploy_id=attempt.deploy_id,
            kind=EventKind.STARTED,
            data=attempt.model_dump(mode="json", exclude={"outcome", "message", "finished_at"}),
        ),
        attempt.env,
    )
    functions = {
        key: FunctionMove(name=fn.name, version_before=fn.alias.version, image_before=fn.image_uri)
        for key, fn in observed.live.items()
    }
    ledger.append(
        Event(
            deploy_id=attempt.deploy_id,
            kind=EventKind.OBSERVED,
            data={
                "schema_before": observed.migrations.current,
                "functions": {k: m.model_dump(mode="json") for k, m in functions.items()},
            },
        ),
        attempt.env,
    )
    found = ledger.get(attempt.deploy_id)
    assert found is not None
    return found


@flow(name="deploy", flow_run_name=run_name, log_prints=True)
def deploy(
    env: str,
    sha: str | None = None,
    canary_percent: int = 0,
    bake_s: int = 0,
    allow_destructive: bool = False,
    dry_run: bool = False,
    project: str | None = None,
) -> DeployRecord | DeployPlan:
    """Deploy one commit of the service at project (a checkout; default: see
    gangway.config.project_root) to one environment, or print what that would do (dry_run).

    Promoting an image another environment validated is flows/promote.py.
    """
    try:
        request = validate_request(env, sha, canary_percent, bake_s, project)
    except (ConfigError, RegistryError) as exc:
        if not dry_run:
            record_refusal(env, sha, exc, current_flow_run_id())
        raise
    config = request.config
    traffic = Traffic(canary_percent=canary_percent, bake_s=bake_s)
    if dry_run:
        return DisplayExecutor().run(
            plan_deploy(request, observe(request), traffic, allow_destructive)
        )
    ledger = Ledger(secrets=config.secret_values())
    attempt = attempt_record(request, traffic, env)
    record: DeployRecord | None = None
    held: HeldLock | None = None
    stage = "deploy lock"
    timeout_s = config.environment.deploy.lock_timeout_s
    service = config.service.name
    try:
        with deploy_lock(
            config, timeout_s, lambda: lock_holder(ledger, env, service), attempt.deploy_id
        ) as held:
            stage = "recovery"
            for closed in recover_abandoned(config, ledger, by=f"deploy {attempt.deploy_id}"):
                print(f"closed abandoned deploy {closed.deploy_id}: {closed.rollback}")
            stage = "observe"
            observed = observe(request, alias_expected.last_left(ledger, config))
            plan = plan_deploy(request, observed, traffic, allow_destructive)
            # Opened only under the lock: recovery treats open records as abandoned.
            started = open_record(ledger, attempt, observed)
            run = Run(
                config,
                request.revision,
                plan,
                observed,
                ledger,
                started,
                request.promoted,
                fence=held.verify,
            )
            record = Executor(run).execute()
            stage = "deploy lock release"
    except GangwayError as exc:
        record = after_stop(ledger, attempt, record, stage, exc)
    return conclude(
        ledger, attempt, record, held, "deploy",
        expected="every gate to pass",
        remedy="see the trigger's remedy above; the ledger has the evidence",
    )


def conclude(
    ledger: Ledger,
    attempt: DeployRecord,
    record: DeployRecord,
    held: HeldLock | None,
    what: str,
    *,
    expected: str,
    remedy: str,
) -> DeployRecord:
    """An attempt's end (deploy or rollback): a lost lock noted on the record, and anything
    but success raised as DeployFailed carrying the record."""
    if held is not None and held.lost is not None:
        record = note_lock_lost(ledger, attempt, held) or record
    if record.outcome is not Outcome.SUCCEEDED:
        raise DeployFailed(
            record,
            f"{what} {record.deploy_id} {record.message}",
            expected=expected,
            found=(record.trigger or {}).get("error", "")[:1500],
            remedy=f"{remedy} (gangway ledger show {record.deploy_id})",
        )
    return record


def note_lock_lost(ledger: Ledger, attempt: DeployRecord, lock: HeldLock) -> DeployRecord | None:
    """A lost deploy lock is one more note on the record (the trigger, if it stopped the
    deploy, says so too); leaving the lock never raises over it."""
    if ledger.get(attempt.deploy_id) is None or lock.lost is None:
        return None
    ledger.append(
        Event(
            deploy_id=attempt.deploy_id,
            kind=EventKind.NOTE,
            data={
                "text": f"the deploy lock {lock.name!r} was lost {lock.lost.describe()}; "
                "after that no traffic moved forward and no success was recorded (both are "
                "fenced); a restore put back only what this deploy had set"
            },
        ),
        attempt.env,
    )
    return ledger.get(attempt.deploy_id)


def after_stop(
    ledger: Ledger,
    attempt: DeployRecord,
    record: DeployRecord | None,
    stage: str,
    exc: GangwayError,
) -> DeployRecord:
    """An error outside the steps: before any step it is the attempt's whole record; after
    the executor finished (releasing the lock failed) it is one more event, erasing nothing."""
    if record is not None or ledger.get(attempt.deploy_id) is not None:
        ledger.append(
            Event(
                deploy_id=attempt.deploy_id,
                kind=EventKind.NOTE,
                data={"text": f"after {stage}: {exc.render()[:2000]}"},
            ),
            attempt.env,
        )
        found = ledger.get(attempt.deploy_id)
        assert found is not None
        return found
    outcome = Outcome.BLOCKED if stage == "deploy lock" else Outcome.FAILED
    return ledger.write(
        attempt.model_copy(
            update={
                "outcome": outcome,
                "trigger": {"step": stage, "error": exc.render()[:2000], "checks": []},
                "message": f"{outcome.value} at {stage}; nothing changed",
                "finished_at": datetime.now(UTC),
            }
        )
    )
