"""The deploy flow: one environment, one commit, every boundary crossed in order, with evidence.

build → in-image gate → push → migration lint → migrate → verify columns → config gate →
deploy versions → shift traffic → smoke → log scan → ground truth → (canary bake) → record.

Gates before the alias moves block and change nothing; any trigger after it moves restores
the alias to the recorded previous version and proves it by reading it back. Migrations are
expand-only and are not rolled back. Every attempt is in the ledger, whatever its end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.states import Crashed

from gangway import interrupts
from gangway.config import DeployConfig, gangway_home, load_config
from gangway.errors import ConfigError, GangwayError, RegistryError
from gangway.evidence import GateFailed, GateResult, Strength
from gangway.plan import DeployPlan, PlannedFunction, Traffic, make_plan, render_plan
from gangway.render import gate_markdown
from tasks import canary, lambda_deploy, migrations, steps
from tasks.env_lock import deploy_lock
from tasks.image_build import BuiltImage
from tasks.ledger import DeployRecord, FunctionMove, Ledger, Outcome, StepRecord
from tasks.promotion import confirm_in_registry, find_validated
from tasks.registry import PushedImage
from tasks.smoke import SmokeOutcome, smoke_invoke
from tasks.source import (
    SourceRevision,
    checkout_tree,
    outside_repository,
    resolve_sha,
    source_revision,
)

T = TypeVar("T")


class DeployFailed(GangwayError):
    """A deploy that was blocked, rolled back or failed; carries its ledger record."""

    boundary = "deploy"

    def __init__(self, record: DeployRecord, message: str, **kwargs: str) -> None:
        self.record = record
        super().__init__(message, **kwargs)


class DeployInterrupted(GangwayError):
    """The deploy process was interrupted (Ctrl-C, SIGTERM) or crashed mid-step."""

    boundary = "orchestration"


@dataclass(frozen=True)
class Observed:
    """What the world looks like before the deploy (all read-only)."""

    live: dict[str, lambda_deploy.LiveFunction]
    migrations: migrations.MigrationPlan


def resolve_source(config: DeployConfig, sha: str | None) -> tuple[DeployConfig, SourceRevision]:
    """The revision to deploy and a config whose build context and migrations hold its tree.

    A build input outside the repository (context, Dockerfile, migrations) is not part of any
    commit: the image is not what the SHA alone describes, so the revision is dirty (tagged so,
    never promotable). With a SHA such an input cannot come from the commit: it is used from
    disk as it is, and everything inside the repository comes from the commit.
    """
    root = config.root.resolve()
    dockerfile = (config.build_context / config.service.build.dockerfile).resolve()
    inputs = [config.build_context, dockerfile, config.migrations_dir]
    outside = outside_repository(root, inputs)
    inside = [p for p in inputs if p not in outside]
    head = source_revision(config.root, inside)
    if outside:
        head = SourceRevision(sha=head.sha, dirty=True)
    if sha is None:
        return config, head
    full = resolve_sha(config.root, sha)
    if full == head.sha and not head.dirty:
        return config, head
    revision = SourceRevision(sha=full, dirty=bool(outside))
    rel = sorted({str(p.resolve().relative_to(root)) for p in inside})
    tree = checkout_tree(config.root, full, rel, gangway_home() / "src") if rel else root
    if not outside:
        return config.model_copy(update={"root": tree}), revision

    def placed(path: Path) -> Path:
        return path if path in outside else tree / path.resolve().relative_to(root)

    build = config.service.build.model_copy(
        update={"context": placed(config.build_context), "dockerfile": str(placed(dockerfile))}
    )
    service = config.service.model_copy(
        update={"build": build, "migrations": placed(config.migrations_dir)}
    )
    return config.model_copy(update={"root": tree, "service": service}), revision


def observe(config: DeployConfig) -> Observed:
    """Read the functions, their aliases and the pending migrations."""
    return Observed(
        live=lambda_deploy.describe_functions(config),
        migrations=migrations.plan_migrations(config),
    )


def build_plan(
    config: DeployConfig,
    revision: SourceRevision,
    observed: Observed,
    traffic: Traffic,
    allow_destructive: bool,
    promoted: PushedImage | None = None,
) -> DeployPlan:
    """The plan from configuration and observed state."""
    return make_plan(
        config,
        commit_sha=revision.sha,
        dirty=revision.dirty,
        image_tag=revision.tag,
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
        promoted_image=promoted.by_digest if promoted else "",
    )


class Deployment:
    """Executes a plan: the real executor. (A dry run renders the same plan instead.)"""

    def __init__(
        self,
        config: DeployConfig,
        revision: SourceRevision,
        plan: DeployPlan,
        observed: Observed,
        ledger: Ledger,
        attempt: DeployRecord,
        promoted: PushedImage | None = None,
    ) -> None:
        self.config = config
        self.promoted = promoted
        self.revision = revision
        self.plan = plan
        self.observed = observed
        self.ledger = ledger
        self.log = get_run_logger()
        self.record = attempt.model_copy(
            update={
                "schema_before": observed.migrations.current,
                "functions": {
                    key: FunctionMove(
                        name=fn.name, version_before=fn.alias.version, image_before=fn.image_uri
                    )
                    for key, fn in observed.live.items()
                },
            }
        )
        self.versions: dict[str, lambda_deploy.DeployedVersion] = {}
        # The functions whose alias a canary really moves (their new version is not live yet).
        self.canaried: set[str] = set()
        self.already_live = ""  # set when a canary has nothing to shift: the success message
        self.inconclusive = ""  # set when the bake ended without enough canary traffic
        self.correlation_id = uuid.uuid4().hex
        self.deploy_started_ms = 0

    # -- the ordering -------------------------------------------------------------------
    def run(self) -> DeployRecord:
        """Run every step in order; block, roll back or succeed; always record."""
        self.save()
        try:
            built = self.image()
            self.record.image_ref = built.reference
            self.gate(
                "in-image gate",
                lambda: steps.gate_image(self.config, built, self.live_env()),
            )
            pushed = self.promoted or self.timed("push", lambda: steps.push(self.config, built))
            self.record.image_digest = pushed.digest
            self.gate(
                "migration lint",
                lambda: steps.lint(
                    self.config, self.observed.migrations, self.plan.allow_destructive
                ),
            )
            self.migrate()
            self.gate(
                "verify columns",
                lambda: steps.verify_columns(self.config, self.observed.migrations),
            )
            self.gate("config gate", lambda: steps.config_gate(self.config, self.observed.live))
            self.timed("deploy", lambda: self.deploy_versions(pushed.by_digest))
            self.timed("shift traffic", self.shift_traffic)
            if self.already_live:
                self.record.steps[-1] = self.record.steps[-1].model_copy(
                    update={"status": "skipped", "detail": self.already_live}
                )
            outcomes = self.smoke()
            self.gate("log scan", self.scan_logs)
            self.gate("ground truth", lambda: self.ground_truth(outcomes))
            if self.plan.traffic.is_canary and self.canaried:
                self.gate("bake", self.bake)
                self.timed("full shift", self.full_shift)
            elif self.plan.traffic.is_canary:
                self.record.steps.append(
                    StepRecord(name="bake", status="skipped", detail=self.already_live)
                )
            interrupts.check()
            self.finish(Outcome.SUCCEEDED, self.already_live or "deployed and verified")
        except GateFailed as exc:
            self.fail(self.current_step, exc, gate=exc.result)
        except GangwayError as exc:
            self.fail(self.current_step, exc)
        except BaseException as exc:  # interrupt, cancellation, crash: traffic first
            # Prefect 3.8 turns a Ctrl-C that lands while a task run starts into ValueError
            # ("Task run is not set"): the recorded request says what really happened.
            stop = interrupts.requested()
            self.fail(self.current_step, stop or exc, interrupted=True)
            if stop is not None and not isinstance(exc, type(stop)):
                raise type(stop)(*stop.args) from exc
            raise
        return self.record

    # -- steps --------------------------------------------------------------------------
    current_step = "start"

    def image(self) -> BuiltImage:
        """The image to gate: built from the revision, or (promotion) pulled by digest."""
        promoted = self.promoted
        if promoted is None:
            return self.timed("build", lambda: steps.build(self.config, self.revision))
        return self.timed("pull", lambda: steps.pull(promoted, self.revision))

    def timed(self, name: str, action: Callable[[], T]) -> T:
        """Run one step, recording its status and duration in the ledger."""
        self.current_step = name
        interrupts.check()  # a Ctrl-C whose exception got lost still stops the deploy here
        started = time.monotonic()
        try:
            result = action()
        except BaseException:
            self.record.steps.append(
                StepRecord(name=name, status="failed", seconds=time.monotonic() - started)
            )
            self.save()
            raise
        self.record.steps.append(
            StepRecord(name=name, status="passed", seconds=time.monotonic() - started)
        )
        self.save()
        return result

    def gate(self, name: str, evaluate: Callable[[], GateResult]) -> GateResult:
        """Run a gate step, record and publish its evidence, raise GateFailed when it fails."""
        result = self.timed(name, evaluate)
        self.record.gates.append(result)
        self.record.steps[-1] = self.record.steps[-1].model_copy(
            update={
                "status": result.status.value,
                "detail": f"{result.strength}: {len(result.checks)} checks"
                + (f", {len(result.failures)} failed" if result.failures else ""),
            }
        )
        self.save()
        create_markdown_artifact(
            key=f"{self.plan.env}-{_slug(name)}",
            markdown=gate_markdown(result),
            description=f"{result.summary()} [{result.strength}]",
        )
        self.log.info(result.summary())
        return result.raise_if_failed()

    def live_env(self) -> dict[str, dict[str, str]]:
        """The functions' deployed environments, for the in-image start-up check."""
        return {
            key: {name: value.get_secret_value() for name, value in fn.env.items()}
            for key, fn in self.observed.live.items()
        }

    def migrate(self) -> None:
        def applied() -> GateResult:
            return self.gate(
                "migration applied",
                lambda: steps.migration_applied(self.config, self.observed.migrations),
            )

        if self.observed.migrations.pending:
            try:
                result = self.timed("migrate", lambda: steps.migrate(self.config))
            except GangwayError:
                # MySQL DDL is not transactional: say exactly where the schema was left.
                applied()
                raise
            self.record.schema_after = result.after
        else:
            self.record.schema_after = self.observed.migrations.current
            self.record.steps.append(
                StepRecord(name="migrate", status="passed", detail="nothing pending")
            )
        applied()

    def deploy_versions(self, image_uri: str) -> None:
        deployed_all = steps.deploy_versions(self.config, self.observed.live, image_uri)
        for key, deployed in deployed_all.items():
            self.versions[key] = deployed
            move = self.record.functions[key]
            move.version_after = deployed.version
            move.image_after = deployed.image_uri
        self.deploy_started_ms = int(time.time() * 1000)

    def shift_traffic(self) -> None:
        if self.plan.traffic.is_canary:
            self.canaried = {k for k in self.versions if not self._already_live(k)}
            if not self.canaried:
                self._nothing_to_shift()
                return
            for key in sorted(set(self.versions) - self.canaried):
                self.record.notes.append(
                    f"nothing to shift for {key}: version {self.versions[key].version} already live"
                )
        moving = self.canaried if self.plan.traffic.is_canary else set(self.versions)
        # Recorded BEFORE the call: a kill in between still knows where to go back.
        for key in moving:
            self.record.functions[key].alias_moved = True
        self.save()
        if self.plan.traffic.is_canary:
            targets = {
                v.name: (self.record.functions[k].version_before or "$LATEST", v.version)
                for k, v in self.versions.items()
                if k in moving
            }
            steps.set_canaries(self.config, targets, self.plan.traffic.canary_percent)
        else:
            self.full_shift()

    def _already_live(self, key: str) -> bool:
        """The alias already sends all its traffic to this function's new version."""
        before = self.versions[key].previous_alias
        return before.version == self.versions[key].version and not before.weights

    def _nothing_to_shift(self) -> None:
        # A canary of what already serves all traffic cannot be split or baked; the deploy
        # still smokes it through the alias (evidence the live version works) and succeeds.
        found = sorted({v.version for v in self.versions.values()}, key=lambda v: (len(v), v))
        which = (
            f"version {found[0]}"
            if len(found) == 1
            else "versions " + ", ".join(f"{k} {v.version}" for k, v in self.versions.items())
        )
        self.already_live = (
            f"nothing to shift: {which} already live on alias {self.config.environment.alias} "
            "(no canary split, no bake); smoke, log scan and ground truth verified it"
        )
        self.record.notes.append(self.already_live)

    def full_shift(self) -> None:
        steps.shift_aliases(self.config, {v.name: v.version for v in self.versions.values()})

    def qualifier(self, key: str) -> str:
        """Smoke through the alias when it routes all traffic; the version itself in a canary."""
        if key in self.canaried:
            return self.versions[key].version
        return self.config.environment.alias

    def smoke(self) -> list[SmokeOutcome]:
        outcomes: list[SmokeOutcome] = []

        def run() -> GateResult:
            result, found = steps.smoke_all(
                self.config,
                {key: self.qualifier(key) for key in self.versions},
                self.correlation_id,
                {key: v.version for key, v in self.versions.items()},
            )
            outcomes.extend(found)
            return result

        self.gate("smoke", run)
        return outcomes

    def scan_logs(self) -> GateResult:
        keys = sorted({c.function for c in self.config.smoke})
        versions = {self.versions[k].name: self.versions[k].version for k in keys}
        results = steps.scan_logs(self.config, versions, self.deploy_started_ms)
        unsmoked = sorted(set(self.versions) - set(keys))
        combined = GateResult.combine("log scan", "observability", Strength.OBSERVABILITY, results)
        if unsmoked:
            self.record.notes.append(
                f"log scan skipped for {', '.join(unsmoked)}: no smoke case invokes them"
            )
        return combined

    def ground_truth(self, outcomes: list[SmokeOutcome]) -> GateResult:
        cases = {c.name: c for c in self.config.smoke}
        results = [
            steps.check_ground_truth(self.config, cases[o.case], o.payload, self.correlation_id)
            for o in outcomes
            if cases[o.case].ground_truth is not None
        ]
        return GateResult.combine("ground truth", "data", Strength.GROUND_TRUTH, results)

    def bake(self) -> GateResult:
        """Hold the canary for the bake window, then judge the new versions on what they served
        inside it: their invocations in the logs plus every synthetic response, validated."""
        started_ms = int(time.time() * 1000)
        synthetic = self._synthetic_traffic(time.monotonic() + self.plan.traffic.bake_s)
        moving = {k: self.versions[k] for k in sorted(self.canaried)}
        tally = {k: canary.BakeTally.of(synthetic, k, self.versions[k].version) for k in moving}
        counts = steps.count_canary(
            self.config,
            {v.name: v.version for v in moving.values()},
            started_ms,
            {v.name: tally[k].awaited for k, v in moving.items()},
        )
        for key, version in moving.items():
            tally[key].add_logs(counts[version.name])
        verdict = canary.judge_bake(
            self.config.environment,
            canary.BakeWindow(
                bake_s=self.plan.traffic.bake_s, canary_percent=self.plan.traffic.canary_percent
            ),
            tally,
            synthetic,
        )
        self.inconclusive = verdict.inconclusive
        return verdict.result

    def _synthetic_traffic(self, deadline: float) -> list[SmokeOutcome]:
        """Send the smoke cases without ground truth through the alias until the window ends
        (the bake is never cut short); with synthetic traffic off, only wait."""
        policy = self.config.environment.deploy
        cases = [
            c for c in self.config.smoke if c.ground_truth is None and c.function in self.canaried
        ]
        if not policy.bake_synthetic:
            cases = []
        sent: list[SmokeOutcome] = []
        while (remaining := deadline - time.monotonic()) > 0:
            if not cases:
                interrupts.sleep(remaining)
                break
            for case in cases:
                if time.monotonic() >= deadline:
                    break
                sent.append(
                    smoke_invoke(
                        self.config, case, self.config.environment.alias, self.correlation_id
                    )
                )
            pause = min(policy.bake_invoke_interval_s, deadline - time.monotonic())
            interrupts.sleep(max(0.0, pause))
        return sent

    # -- endings ------------------------------------------------------------------------
    def rollback(self) -> dict[str, object]:
        started = time.monotonic()
        moved = {k: m for k, m in self.record.functions.items() if m.alias_moved}
        previous = {m.name: self.observed.live[k].alias for k, m in moved.items()}
        try:
            states = steps.restore_aliases(self.config, previous)
        except BaseException as exc:  # the restore step itself failed: say so, loudly
            states = {name: f"restore step failed: {exc}" for name in previous}
        restored: dict[str, object] = {}
        ok = True
        for key, move in moved.items():
            state = states[move.name]
            if isinstance(state, str):
                ok = False
                move.restore_verified = False
                restored[key] = {"error": state[:1000]}
                continue
            move.restored_to = state.version
            move.restore_verified = state.version == move.version_before
            ok = ok and move.restore_verified
            restored[key] = {"to": state.version, "verified": move.restore_verified}
        return {
            "result": "verified" if ok else "FAILED",
            "seconds": round(time.monotonic() - started, 3),
            "functions": restored,
        }

    def fail(
        self,
        step: str,
        exc: BaseException,
        gate: GateResult | None = None,
        interrupted: bool = False,
    ) -> None:
        moved = any(m.alias_moved for m in self.record.functions.values())
        if not isinstance(exc, GangwayError):
            exc = DeployInterrupted(
                f"the deploy stopped during {step}: {type(exc).__name__}",
                expected="the deploy to run to its end",
                found=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                remedy="the moved aliases were put back (see the rollback); re-run the deploy"
                if moved
                else "nothing had moved; re-run the deploy",
            )
        self.record.trigger = {
            "step": step,
            "error": str(exc)[:2000],
            "checks": [c.model_dump() for c in gate.failures] if gate else [],
        }
        if moved:
            self.record.rollback = self.rollback()
        if interrupted:
            outcome = Outcome.INTERRUPTED
        elif moved:
            outcome = Outcome.ROLLED_BACK
        elif gate is not None:
            outcome = Outcome.BLOCKED
        else:
            outcome = Outcome.FAILED
        summary = f"{outcome.value} at {step}"
        if self.inconclusive and gate is not None and gate.gate == "bake":
            # Not a failure of the canary, not a pass either: too little traffic to judge it.
            summary += f" ({self.inconclusive})"
        if moved:
            summary += f"; rollback {self.record.rollback['result']}"  # type: ignore[index]
        if self.record.schema_after and self.record.schema_after != self.record.schema_before:
            self.record.notes.append(
                f"migrations {self.record.schema_before} → {self.record.schema_after} stay "
                "applied (expand/contract: they are not rolled back)"
            )
        self.finish(outcome, summary)

    def finish(self, outcome: Outcome, message: str) -> None:
        self.record.outcome = outcome
        self.record.message = message
        self.record.finished_at = datetime.now(UTC)
        self.save()
        r = self.record
        lines = [
            f"### deploy {r.deploy_id}: {r.outcome.value}",
            f"{r.message}",
            "",
            f"commit `{r.commit_sha}` → digest `{r.image_digest}` → schema "
            f"`{r.schema_before}` → `{r.schema_after}`",
            "",
            "| function | before | after | restored |",
            "|---|---|---|---|",
            *(
                f"| {m.name} | {m.version_before} | {m.version_after} | {m.restored_to or '-'} |"
                for m in r.functions.values()
            ),
        ]
        create_markdown_artifact(
            key=f"{r.env}-deploy-record", markdown="\n".join(lines), description=r.message
        )

    def save(self) -> None:
        self.record = self.ledger.save(self.record)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")


def _flow_run_id() -> str | None:
    try:
        return str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:  # outside a flow run there is no id to record
        return None


def _holder(ledger: Ledger, env: str) -> str:
    running = ledger.running(env)
    if not running:
        return "a deploy holding the lock (no running record in this ledger)"
    r = running[0]
    return (
        f"deploy {r.deploy_id} of {r.commit_sha[:12]} by {r.actor}, started {r.started_at:%H:%M:%S}"
    )


def _close_flow_run(flow_run_id: str | None) -> str:
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


def pending_recovery(ledger: Ledger, env: str) -> list[DeployRecord]:
    """Attempts whose aliases may still be off their previous versions.

    Killed mid-flight (still marked running), or whose rollback FAILED (AWS did not answer
    within the restore window). Only records newer than the last success can be pending: every
    deploy runs this recovery first, under the lock, and succeeds only after it.
    """
    pending = ledger.running(env)
    for record in ledger.recent(env, limit=50):
        if record.outcome is Outcome.SUCCEEDED:
            break
        rollback = record.rollback or {}
        if record.outcome is not Outcome.RUNNING and rollback.get("result") == "FAILED":
            pending.append(record)
    return pending


def recover_interrupted(config: DeployConfig, ledger: Ledger) -> list[DeployRecord]:
    """Close attempts a killed process left running, and finish rollbacks that FAILED: put
    moved aliases back, record it.

    Called with the deploy lock held, so no record marked running can still be alive.
    """
    closed = []
    for record in pending_recovery(ledger, config.environment.name):
        killed = record.outcome is Outcome.RUNNING
        restored: dict[str, dict[str, object]] = {}
        for key, move in record.functions.items():
            if not move.alias_moved or move.version_before is None:
                continue
            state = lambda_deploy.read_alias(config, move.name)
            if state.version == move.version_before and not state.weights:
                # Killed before the alias call landed (or put back by hand): nothing to undo.
                move.restored_to, move.restore_verified = state.version, True
                restored[key] = {"to": state.version, "verified": True, "action": "none needed"}
                continue
            back = lambda_deploy.restore_alias(
                config,
                move.name,
                lambda_deploy.AliasState(
                    name=config.environment.alias, version=move.version_before, weights={}
                ),
            )
            move.restored_to = back.version
            move.restore_verified = back.version == move.version_before
            restored[key] = {"to": back.version, "verified": move.restore_verified}
        result = "verified" if all(r["verified"] for r in restored.values()) else "FAILED"
        # When traffic was put back: how long it stayed stranded is read from here.
        at = datetime.now(UTC).isoformat()
        if killed:
            record.rollback = {"result": result, "functions": restored, "by": "recovery", "at": at}
            record.notes.append(_close_flow_run(record.flow_run_id))
            record.outcome = Outcome.INTERRUPTED
            record.message = "the deploy process died; a later deploy restored its aliases"
        else:
            record.rollback = {
                "result": result,
                "functions": restored,
                "by": "recovery",
                "at": at,
                "failed": record.rollback,
            }
            record.message += "; a later deploy restored its aliases"
        record.finished_at = record.finished_at or datetime.now(UTC)
        closed.append(ledger.save(record))
    return closed


@dataclass(frozen=True)
class Request:
    """A validated deploy request: configuration, source revision, and (promotion) the image."""

    config: DeployConfig
    revision: SourceRevision
    promoted: PushedImage | None = None
    validated_by: str = ""


def validate_request(
    env: str, sha: str | None, canary_percent: int, bake_s: int, promote: bool = False
) -> Request:
    """Check every input before any side effect: traffic, configuration, SHA, promoted image.

    A plain function: the CLI calls it before the flow run starts, so bad input is refused
    (exit 2) without a failed Prefect run; the flow calls it again for runs started elsewhere.
    """
    if promote and not sha:
        raise ConfigError(
            "a promotion needs the commit whose image it promotes",
            expected="--promote with --sha COMMIT",
            found="no --sha",
            remedy="pass --sha with the commit a lower environment validated",
        )
    if not 0 <= canary_percent < 100:
        raise ConfigError(
            "canary percent out of range",
            expected="0 (all at once) to 99",
            found=str(canary_percent),
            remedy="pass --canary between 1 and 99, or omit it",
        )
    if bake_s < 0 or (canary_percent and bake_s == 0):
        raise ConfigError(
            "a canary needs a bake time",
            expected="--bake > 0 with --canary",
            found=f"bake {bake_s}s",
            remedy="pass --bake SECONDS",
        )
    config = load_config(env)
    policy = config.environment.deploy
    if bake_s > policy.max_bake_s:
        raise ConfigError(
            f"a bake of {bake_s}s is longer than {env} allows",
            expected=f"--bake at most environment.deploy.max_bake_s = {policy.max_bake_s}s "
            f"(a bake holds {env}'s deploy lock throughout)",
            found=f"--bake {bake_s}",
            remedy=f"pass --bake {policy.max_bake_s} or less, or raise max_bake_s under "
            f"[environment.deploy] in {env}.toml",
        )
    if not config.smoke:
        raise ConfigError(
            "the service declares no smoke cases",
            expected="at least one [[smoke]] case: without one nothing proves the new version",
            found="none",
            remedy="add [[smoke]] cases to service.toml (or the environment's file)",
        )
    config, revision = resolve_source(config, sha)
    if not promote:
        return Request(config, revision)
    validated = find_validated(Ledger(), revision.sha)
    pushed = confirm_in_registry(config, validated)
    return Request(
        config,
        revision,
        promoted=pushed,
        validated_by=f"deploy {validated.deploy_id} in {validated.env}",
    )


def record_refusal(env: str, sha: str | None, exc: GangwayError) -> DeployRecord:
    """Bad input is refused before anything changes, and the refusal is still on record."""
    now = datetime.now(UTC)
    return Ledger().save(
        DeployRecord(
            env=env,
            commit_sha=sha or "",
            outcome=Outcome.REFUSED,
            trigger={"step": "input", "error": exc.render()[:2000], "checks": []},
            message="refused: bad input; nothing changed",
            started_at=now,
            finished_at=now,
            flow_run_id=_flow_run_id(),
        )
    )


@flow(name="deploy", log_prints=True)
def deploy(
    env: str,
    sha: str | None = None,
    canary_percent: int = 0,
    bake_s: int = 0,
    allow_destructive: bool = False,
    dry_run: bool = False,
    promote: bool = False,
) -> DeployRecord | DeployPlan:
    """Deploy one commit to one environment, or print what that would do (dry_run).

    With promote, the image a succeeded deploy of sha validated is deployed by digest.
    """
    try:
        request = validate_request(env, sha, canary_percent, bake_s, promote)
    except (ConfigError, RegistryError) as exc:
        if not dry_run:
            record_refusal(env, sha, exc)
        raise
    config, revision = request.config, request.revision
    traffic = Traffic(canary_percent=canary_percent, bake_s=bake_s)
    if dry_run:
        observed = observe(config)
        plan = build_plan(config, revision, observed, traffic, allow_destructive, request.promoted)
        get_run_logger().info("dry run: nothing changed\n%s", render_plan(plan))
        return plan
    ledger = Ledger(secrets=config.secret_values())
    policy = config.environment.deploy
    attempt = DeployRecord(
        env=env,
        commit_sha=revision.sha,
        dirty=revision.dirty,
        traffic={
            "mode": "canary" if traffic.is_canary else "all-at-once",
            "canary_percent": canary_percent,
            "bake_s": bake_s,
        },
        flow_run_id=_flow_run_id(),
        kind="promote" if request.promoted else "deploy",
        image_digest=request.promoted.digest if request.promoted else None,
        notes=[f"promoted the image validated by {request.validated_by}"]
        if request.promoted
        else [],
    )
    stage = "deploy lock"
    try:
        with deploy_lock(config, policy.lock_timeout_s, lambda: _holder(ledger, env)):
            stage = "recovery"
            for closed in recover_interrupted(config, ledger):
                print(f"closed interrupted deploy {closed.deploy_id}: {closed.rollback}")
            # Marked running only under the lock: recovery treats running records as dead.
            attempt = ledger.save(attempt)
            stage = "observe"
            observed = observe(config)
            plan = build_plan(
                config, revision, observed, traffic, allow_destructive, request.promoted
            )
            record = Deployment(
                config, revision, plan, observed, ledger, attempt, request.promoted
            ).run()
    except GangwayError as exc:  # refused before any step ran: still one record of it
        attempt.outcome = Outcome.BLOCKED if stage == "deploy lock" else Outcome.FAILED
        attempt.trigger = {"step": stage, "error": exc.render()[:2000], "checks": []}
        attempt.message = f"{attempt.outcome.value} at {stage}; nothing changed"
        attempt.finished_at = datetime.now(UTC)
        record = ledger.save(attempt)
    if record.outcome is not Outcome.SUCCEEDED:
        raise DeployFailed(
            record,
            f"deploy {record.deploy_id} {record.message}",
            expected="every gate to pass",
            found=(record.trigger or {}).get("error", "")[:1500],
            remedy="see the trigger's remedy above; the ledger has the evidence "
            f"(gangway ledger show {record.deploy_id})",
        )
    return record
