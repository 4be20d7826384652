"""The promote flow: ship the exact image one environment validated to the next, no rebuild.

`gangway promote --sha S --from staging --to prod --reason "…"`: the policy decides first, on
values read beforehand (tasks/promotion_policy.py: the declared path, a validated digest in
the source, its soak time, the target's schema after its pending migrations); a refusal is a
``refused`` record and nothing moves. Then, when the target requires it, a human approves
(flows/approval.py) BEFORE the environment's lock is taken, so a paused promotion never blocks
the environment. Under the lock the policy is checked again, the image is copied into the
target's registry when that registry differs (tasks/registry_copy.py, digest preserved), and
the deploy's own plan and executor run for the target with the image by digest (pull,
in-image gate, migration lint, migrate, verify columns, config gate, deploy, shift, smoke,
log scan, ground truth, rollback on any stop): the same steps, never a copy of them. The
record names the source record it promoted, the reason, the requester and the approver.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.deploy import (
    after_stop,
    attempt_record,
    conclude,
    current_flow_run_id,
    lock_holder,
    observe,
    open_record,
    plan_deploy,
)
from flows.deploy_steps import Run
from flows.executor import DisplayExecutor, Executor
from flows.recovery import recover_abandoned
from flows.request import Request, require_evidence, resolve_source
from gangway.config import DeployConfig, load_config, project_root
from gangway.errors import ConfigError, DatabaseError, GangwayError, RegistryError
from gangway.evidence import Check, GateResult
from gangway.plan import DeployPlan, Traffic, render_plan
from gangway.record import DeployRecord, EventKind, Outcome
from tasks import alias_expected, migrations, schema_requirement
from tasks.approval import requester_identity
from tasks.env_lock import HeldLock, deploy_lock
from tasks.ledger import Ledger, of_service
from tasks.promotion import confirm_in_registry
from tasks.promotion_policy import (
    PromotionFacts,
    PromotionRefused,
    SchemaFacts,
    SourceRecord,
    Verdict,
    check_schema,
    decide,
)
from tasks.registry import PushedImage
from tasks.source import SourceRevision, resolve_sha

KIND = "promote"


class PromotionRejected(GangwayError):
    """An approver rejected the promotion, or nobody decided in time: nothing moved."""

    boundary = "approval"


@dataclass(frozen=True)
class PromotionRequest:
    """A promotion the policy allows: the target's configuration at the image's commit, the
    source record it carries on from, and the evidence of every rule."""

    config: DeployConfig
    source_config: DeployConfig
    revision: SourceRevision
    verdict: Verdict
    reason: str
    skip_path_reason: str | None
    checks: tuple[Check, ...] = field(default=())

    @property
    def source(self) -> SourceRecord:
        """The source environment's record that validated the image."""
        return self.verdict.source

    def evidence(self) -> GateResult:
        """Every rule's check, as one gate on the record."""
        return self.verdict.result().model_copy(update={"checks": self.checks})


def _require_inputs(
    sha: str | None, digest: str | None, reason: str, skip_path_reason: str | None
) -> None:
    if not reason or not reason.strip():
        raise ConfigError(
            "a promotion needs a reason",
            expected='--reason "why", kept on the ledger record with who promoted',
            found="an empty reason",
            remedy='pass --reason "…" (e.g. "CI blocked by an unrelated failure")',
        )
    if not sha and not digest:
        raise ConfigError(
            "a promotion needs the image it promotes",
            expected="--sha COMMIT (or --digest sha256:…) validated in the source environment",
            found="neither --sha nor --digest",
            remedy="pass --sha with the commit the source environment validated",
        )
    if digest is not None and not digest.startswith("sha256:"):
        raise ConfigError(
            "not an image digest",
            expected="--digest sha256:<64 hex>",
            found=digest,
            remedy="copy the digest from `gangway ledger sha COMMIT`",
        )
    if skip_path_reason is not None and not skip_path_reason.strip():
        raise ConfigError(
            "skipping the declared path needs a reason",
            expected='--skip-path with --reason-for-skip "why"',
            found="an empty reason for the skip",
            remedy='pass --reason-for-skip "…" (recorded), or promote along the path',
        )


def _facts(
    ledger: Ledger,
    config: DeployConfig,
    sha: str | None,
    digest: str | None,
    source_env: str,
    skip_path_reason: str | None,
) -> PromotionFacts:
    """The source environment's records of the SHA (or the digest), read from the ledger."""
    service = config.service.name
    if sha:
        found = ledger.by_sha(sha, limit=200)
    else:
        found = ledger.by_digest(str(digest), limit=200)
    mine = [r for r in found if of_service(r, service)]
    here = [r for r in mine if r.env == source_env]
    elsewhere = sorted({f"{r.env}: {r.outcome.value}" for r in mine if r.env != source_env})
    return PromotionFacts(
        service=service,
        sha=sha,
        digest=digest,
        source_env=source_env,
        target_env=config.environment.name,
        target=config.environment.promotion,
        records=tuple(SourceRecord.of(r) for r in here),
        now=datetime.now(UTC),
        skip_path_reason=skip_path_reason,
        elsewhere=tuple(elsewhere),
    )


def _schema_facts(config: DeployConfig, ledger: Ledger, source: SourceRecord) -> SchemaFacts:
    """The target's schema read for the image's requirement (read-only): the revision and the
    written columns the source deploy recorded, against the target now and after pending."""
    if config.environment.database is None:
        return SchemaFacts(declared=False)
    record = ledger.get(source.deploy_id)
    columns = schema_requirement.recorded_columns(record) if record else []
    required = source.schema_after
    if config.migrations_dir is None:
        plan = migrations.MigrationPlan(current=None, head=None, pending=())
    else:
        try:
            plan = migrations.plan_migrations(config)
        except DatabaseError as exc:
            return SchemaFacts(
                declared=True, required_revision=required, unreadable=f"{exc.message} ({exc.found})"
            )
    live = (
        schema_requirement.check_requirement(config, record, columns)
        if record is not None and columns
        else None
    )
    return SchemaFacts(
        declared=True,
        required_revision=required,
        chain=tuple(r.id for r in plan.all_revisions),
        current=plan.current,
        pending=tuple(r.id for r in plan.pending),
        after_pending=_added_by_pending(plan),
        live=live,
    )


def _added_by_pending(plan: migrations.MigrationPlan) -> dict[str, set[str]]:
    """The columns the pending revisions add (replayed DDL at head minus at the current)."""
    head = migrations.expected_columns(plan, plan.head)
    now = migrations.expected_columns(plan, plan.current)
    return {t: cols - now.get(t, set()) for t, cols in head.items() if cols - now.get(t, set())}


def validate_promotion(
    sha: str | None,
    source_env: str,
    target_env: str,
    reason: str,
    digest: str | None = None,
    skip_path_reason: str | None = None,
    project: str | None = None,
) -> PromotionRequest:
    """Every rule checked on values read now; raises ConfigError (PromotionRefused for a rule
    of the policy) before anything moves. Called by the CLI, before approval, and under the
    lock."""
    _require_inputs(sha, digest, reason, skip_path_reason)
    config = load_config(target_env, project=project)
    source_config = load_config(source_env, project=project)
    if config.service.name != source_config.service.name:
        raise ConfigError(
            "the source and the target deploy different services",
            expected=f"{source_env} and {target_env} of one service",
            found=f"{source_config.service.name} / {config.service.name}",
            remedy="check service.name in both environments' files",
        )
    if not config.smoke:
        raise ConfigError(
            "the service declares no smoke cases",
            expected="at least one [[smoke]] case: without one nothing proves the new version",
            found="none",
            remedy="add [[smoke]] cases to service.toml (or the environment's file)",
        )
    require_evidence(config)
    ledger = Ledger(secrets=config.secret_values())
    full = resolve_sha(config.root, sha) if sha else None
    verdict = decide(_facts(ledger, config, full, digest, source_env, skip_path_reason))
    # The image's commit: its migrations are the ones the target will run.
    config, revision = resolve_source(config, verdict.source.commit_sha)
    revision = SourceRevision(sha=revision.sha, dirty=False)
    schema_check = check_schema(
        _schema_facts(config, ledger, verdict.source), target_env, verdict.source
    )
    return PromotionRequest(
        config=config,
        source_config=source_config,
        revision=revision,
        verdict=verdict,
        reason=reason.strip(),
        skip_path_reason=skip_path_reason.strip() if skip_path_reason else None,
        checks=(*verdict.checks, schema_check),
    )


def record_promotion_refusal(
    source_env: str,
    target_env: str,
    sha: str | None,
    exc: GangwayError,
    *,
    step: str = "promotion policy",
    service: str = "",
    digest: str | None = None,
    notes: list[str] | None = None,
    deploy_id: str | None = None,
    flow_run_id: str | None = None,
) -> DeployRecord:
    """A refused promotion is on record: which rule, expected / found / remedy; nothing moved."""
    now = datetime.now(UTC)
    checks = [exc.check.model_dump(mode="json")] if isinstance(exc, PromotionRefused) else []
    record = DeployRecord(
        kind=KIND,
        env=target_env,
        service=service,
        commit_sha=sha or "",
        image_digest=digest,
        outcome=Outcome.REFUSED,
        trigger={"step": step, "error": exc.render()[:2000], "checks": checks},
        message=f"refused: {step}; nothing moved",
        notes=[f"promotion from {source_env}", *(notes or [])],
        started_at=now,
        finished_at=now,
        flow_run_id=flow_run_id,
    )
    if deploy_id:
        record = record.model_copy(update={"deploy_id": deploy_id})
    return Ledger().write(record)


def run_name() -> str:
    """Flow runs are named like ``staging · 2465360 · promote from dev``."""
    params = flow_run.parameters
    ref = params.get("sha") or str(params.get("digest") or "")[7:19]
    try:
        root = project_root(params.get("project"))
        short = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=7", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, GangwayError):
        short = str(ref)[:12]
    kind = "promote dry run" if params.get("dry_run") else "promote"
    return f"{params.get('target_env')} · {short} · {kind} from {params.get('source_env')}"


def _approve(request: PromotionRequest, plan: DeployPlan, requester: str) -> list[str]:
    """Wait for an approver when the target requires one (before the lock); the notes for the
    record, or PromotionRejected when rejected or timed out."""
    policy = request.config.environment.promotion
    target = request.config.environment.name
    if not policy.approval:
        return [f"approval: not required in {target}"]
    from flows.approval import ApprovalRequest, await_approval

    decision = await_approval(
        ApprovalRequest(
            service=request.config.service.name,
            source_env=request.source_config.environment.name,
            target_env=target,
            digest=request.source.digest,
            commit_sha=request.revision.sha,
            requester=requester,
            reason=request.reason,
            plan_text=render_plan(plan),
            timeout_s=policy.approval_timeout_s,
        )
    )
    if decision.approved:
        return [
            f"approved by {decision.approver} at {decision.decided_at:%Y-%m-%d %H:%M:%S} UTC: "
            f"{decision.reason}"
        ]
    what = (
        f"no decision within {policy.approval_timeout_s:g}s"
        if decision.timed_out
        else f"rejected by {decision.approver}: {decision.reason}"
    )
    raise PromotionRejected(
        f"promotion to {target} not approved ({what}); nothing moved",
        expected=f"an approval of this promotion ({target} requires one)",
        found=what,
        remedy="ask an approver (gangway approve RUN --reason …) and promote again",
    )


def _copy(request: PromotionRequest) -> tuple[str, dict[str, object]]:
    """Bring the digest into the target's registry when it differs from the source's; the
    note for the record and the copy's figures."""
    source_registry = request.source_config.environment.registry
    target_registry = request.config.environment.registry
    digest = request.source.digest
    if source_registry == target_registry:
        return (
            f"registry copy: none (source and target share {target_registry})",
            {"copied": False, "bytes": 0, "seconds": 0.0, "same_registry": True},
        )
    from tasks.registry_copy import copy_image

    result = copy_image(request.source_config, request.config, digest)
    figures: dict[str, object] = {
        "copied": result.copied,
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "blobs_mounted": result.blobs_mounted,
        "blobs_uploaded": result.blobs_uploaded,
        "same_registry": False,
    }
    note = (
        f"registry copy: {source_registry} → {target_registry} {digest}: "
        + ("copied" if result.copied else "already there, nothing copied")
        + f", {result.bytes} bytes, {result.blobs_uploaded} blobs uploaded, "
        f"{result.blobs_mounted} mounted, {result.seconds:.2f}s"
    )
    return note, figures


def _preview(request: PromotionRequest) -> tuple[Request, DeployPlan]:
    """The deploy request and plan for the target (read-only): the image by digest."""
    config = request.config
    image = PushedImage(
        config.environment.registry,
        config.service.build.repository,
        "",
        request.source.digest,
        0.0,
    )
    promoted = Request(
        config,
        request.revision,
        promoted=image,
        validated_by=f"{request.source.kind} {request.source.deploy_id} in "
        f"{request.source_config.environment.name}",
    )
    return promoted, plan_deploy(promoted, observe(promoted), Traffic(), False)


def verdict_text(request: PromotionRequest) -> str:
    """The policy's verdict as lines: each rule, what it expected and found."""
    lines = [
        f"promotion {request.source_config.environment.name} → "
        f"{request.config.environment.name}: ALLOWED",
        f"  source   {request.source.kind} {request.source.deploy_id} ({request.source.digest})",
    ]
    lines += [f"  {c.name:<19} ok: {c.found}" for c in request.checks]
    approval = request.config.environment.promotion.approval
    lines.append(f"  approval {'required (before the lock)' if approval else 'not required'}")
    return "\n".join(lines)


@flow(name="promote", flow_run_name=run_name, log_prints=True)
def promote(
    sha: str | None,
    source_env: str,
    target_env: str,
    reason: str,
    digest: str | None = None,
    skip_path_reason: str | None = None,
    dry_run: bool = False,
    project: str | None = None,
) -> DeployRecord | DeployPlan:
    """Promote the image that sha (or digest) validated in source_env to target_env, by
    digest, no rebuild; or print the plan and the policy's verdict (dry_run)."""
    flow_id = current_flow_run_id()
    try:
        request = validate_promotion(
            sha, source_env, target_env, reason, digest, skip_path_reason, project
        )
    except ConfigError as exc:
        if not dry_run:
            record_promotion_refusal(
                source_env,
                target_env,
                sha,
                exc,
                service=_service(target_env, project),
                digest=digest,
                notes=[f"reason: {reason}"],
                flow_run_id=flow_id,
            )
        raise
    promoted, plan = _preview(request)
    if dry_run:
        get_run_logger().info("promotion policy: nothing moved\n%s", verdict_text(request))
        return DisplayExecutor().run(plan)
    config = request.config
    service = config.service.name
    requester = requester_identity()
    attempt = attempt_record(promoted, Traffic(), target_env)
    notes = [
        *attempt.notes,
        f"reason: {request.reason}",
        f"requester: {requester}",
    ]
    if request.skip_path_reason:
        notes.append(f"path skipped ({source_env} → {target_env}): {request.skip_path_reason}")

    def refused(exc: GangwayError, step: str) -> None:
        # This attempt's refusal record: its id, notes so far and the step that refused.
        record_promotion_refusal(
            source_env,
            target_env,
            request.revision.sha,
            exc,
            step=step,
            service=service,
            digest=request.source.digest,
            notes=notes,
            deploy_id=attempt.deploy_id,
            flow_run_id=flow_id,
        )

    try:
        notes += _approve(request, plan, requester)
    except PromotionRejected as exc:
        refused(exc, "approval")
        raise
    attempt = attempt.model_copy(
        update={
            "traffic": {
                **attempt.traffic,
                "promoted_from": request.source.deploy_id,
                "source_env": source_env,
            },
            "notes": notes,
        }
    )
    ledger = Ledger(secrets=config.secret_values())
    record: DeployRecord | None = None
    held: HeldLock | None = None
    stage = "deploy lock"
    try:
        with deploy_lock(
            config,
            config.environment.deploy.lock_timeout_s,
            lambda: lock_holder(ledger, target_env, service),
            attempt.deploy_id,
        ) as held:
            stage = "recovery"
            for closed in recover_abandoned(config, ledger, by=f"promote {attempt.deploy_id}"):
                print(f"closed abandoned deploy {closed.deploy_id}: {closed.rollback}")
            stage = "promotion policy"
            try:
                # The world may have changed while an approver decided: decide again.
                again = validate_promotion(
                    request.revision.sha,
                    source_env,
                    target_env,
                    reason,
                    request.source.digest,
                    skip_path_reason,
                    project,
                )
                stage = "registry"
                copy_note, copy = _copy(again)
                pushed = confirm_in_registry(
                    again.config,
                    again.source.digest,
                    promoted.validated_by,
                    again.revision.sha,
                )
            except (ConfigError, RegistryError) as exc:
                refused(exc, stage)
                raise
            stage = "observe"
            promoted = Request(
                again.config, again.revision, promoted=pushed, validated_by=promoted.validated_by
            )
            observed = observe(promoted, alias_expected.last_left(ledger, again.config))
            plan = plan_deploy(promoted, observed, Traffic(), False)
            attempt = attempt.model_copy(
                update={
                    "notes": [*attempt.notes, copy_note],
                    "traffic": {**attempt.traffic, "copy": copy},
                }
            )
            started = open_record(ledger, attempt, observed)
            run = Run(
                again.config,
                again.revision,
                plan,
                observed,
                ledger,
                started,
                pushed,
                fence=held.verify,
            )
            run.emit(EventKind.GATE, again.evidence().model_dump(mode="json"))
            record = Executor(run).execute()
            stage = "deploy lock release"
    except (ConfigError, RegistryError):
        raise  # a refusal: on record already, nothing moved
    except GangwayError as exc:
        record = after_stop(ledger, attempt, record, stage, exc)
    return conclude(
        ledger,
        attempt,
        record,
        held,
        "promotion",
        expected="every gate to pass in the target",
        remedy="see the trigger's remedy above; the source environment was not touched",
    )


def _service(env: str, project: str | None) -> str:
    """The service's name for a refusal's record, when its configuration loads at all."""
    try:
        return load_config(env, project=project).service.name
    except ConfigError:
        return ""
