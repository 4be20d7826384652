"""What each kind of plan step does: small handlers over the boundary tasks.

A handler reads the run's inputs and what earlier steps produced, crosses one boundary (through
tasks/), records what it produced as events, and returns a gate result or ``Done``. Handlers
never restore traffic or decide the outcome: that is the executor's job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gangway import interrupts
from gangway.config import DeployConfig
from gangway.errors import GangwayError
from gangway.evidence import Check, GateResult, Strength
from gangway.plan import DeployPlan, StepKind
from gangway.record import DeployRecord, Event, EventKind, apply_to
from tasks import canary, lambda_publish, lambda_read, migrations, step_calls
from tasks.image_build import BuiltImage
from tasks.image_reuse import ReuseDecision
from tasks.ledger import Ledger
from tasks.registry import PushedImage
from tasks.smoke import SmokeOutcome, request_ids, smoke_invoke
from tasks.source import SourceRevision


@dataclass(frozen=True)
class Observed:
    """What the world looks like before the deploy (all read-only)."""

    live: dict[str, lambda_read.LiveFunction]
    migrations: migrations.MigrationPlan
    # This clean commit's image, already pushed and verified (None: build it, and why).
    reuse: ReuseDecision = field(default_factory=lambda: ReuseDecision(None, "not looked for"))


@dataclass(frozen=True)
class Done:
    """A step that is not a gate ended: passed, or skipped with the reason."""

    status: str = "passed"
    detail: str = ""


@dataclass
class Run:
    """One deploy attempt being executed: its inputs, what its steps produced, its record."""

    config: DeployConfig
    revision: SourceRevision
    plan: DeployPlan
    observed: Observed
    ledger: Ledger
    record: DeployRecord
    promoted: PushedImage | None = None
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    built: BuiltImage | None = None
    pushed: PushedImage | None = None
    versions: dict[str, lambda_publish.DeployedVersion] = field(default_factory=dict)
    canaried: set[str] = field(default_factory=set)  # functions whose alias a canary splits
    already_live: str = ""  # a canary with nothing to shift: the success message
    inconclusive: str = ""  # the bake ended without enough canary traffic to judge
    outcomes: list[SmokeOutcome] = field(default_factory=list)
    deploy_started_ms: int = 0
    migrate_error: GangwayError | None = None  # judged by the "migration applied" step
    # Raises when this deploy may no longer move traffic (its deploy lock was lost).
    fence: Callable[[], None] = field(default=lambda: None)
    # Function name → the routing this deploy last set (or was setting) on its alias: a
    # restore puts back only aliases still routed by this deploy, never another deploy's move.
    moved_to: dict[str, lambda_read.AliasState] = field(default_factory=dict)

    def emit(self, kind: EventKind, data: dict[str, Any]) -> None:
        """Append one event to the ledger, then fold it into the record."""
        stored = self.ledger.append(
            Event(deploy_id=self.record.deploy_id, kind=kind, data=data), self.record.env
        )
        # The run's own copy: folded in place (a deep copy per event costs more than the write).
        self.record = apply_to(self.record, stored)

    def note(self, text: str) -> None:
        """Keep a sentence on the record."""
        self.emit(EventKind.NOTE, {"text": text})

    def moving_keys(self) -> set[str]:
        """The functions whose alias the next traffic step moves."""
        if not self.plan.traffic.is_canary:
            return set(self.versions)
        if self.canaried or self.already_live:
            return set(self.canaried)
        return {k for k in self.versions if not self._already_live(k)}

    def _already_live(self, key: str) -> bool:
        before = self.versions[key].previous_alias
        return before.version == self.versions[key].version and not before.weights


def build(run: Run) -> Done:
    """Build the image from the revision."""
    run.built = step_calls.build(run.config, run.revision)
    run.emit(EventKind.IMAGE, {"image_ref": run.built.reference})
    return Done()


def reuse_image(run: Run) -> Done:
    """This commit's image is already pushed and verifies: use it, do not build it again."""
    reusable = run.observed.reuse.image
    assert reusable is not None
    run.built, run.pushed = step_calls.reuse(run.config, reusable)
    run.emit(
        EventKind.IMAGE, {"image_ref": run.built.reference, "image_digest": run.pushed.digest}
    )
    run.note(f"build skipped: {'; '.join(reusable.checks)}")
    return Done("passed", run.pushed.by_digest)


def pull(run: Run) -> Done:
    """Promotion: pull the validated image by digest instead of building."""
    assert run.promoted is not None
    run.built = step_calls.pull(run.promoted, run.revision, run.config)
    run.emit(EventKind.IMAGE, {"image_ref": run.built.reference})
    return Done()


def image_gate(run: Run) -> GateResult:
    """Import inside the image the handler each function will really run (its ImageConfig
    command, else the image's CMD), with the functions' deployed environment."""
    assert run.built is not None
    env = {
        key: {name: value.get_secret_value() for name, value in fn.env.items()}
        for key, fn in run.observed.live.items()
    }
    image_configs = {key: dict(fn.image_config) for key, fn in run.observed.live.items()}
    return step_calls.gate_image(run.config, run.built, env, image_configs)


def push(run: Run) -> Done:
    """Push the image and read its digest back (a promoted image is already there)."""
    if run.promoted is not None:
        run.pushed = run.promoted
        run.emit(EventKind.IMAGE, {"image_digest": run.pushed.digest})
        return Done("skipped", f"promoted by digest {run.promoted.digest}")
    if run.pushed is not None:
        return Done("skipped", f"reused: {run.pushed.digest} is already in the registry")
    assert run.built is not None
    run.pushed = step_calls.push(run.config, run.built)
    run.emit(EventKind.IMAGE, {"image_digest": run.pushed.digest})
    return Done()


def migration_lint(run: Run) -> GateResult:
    """Destructive pending revisions block unless allowed."""
    return step_calls.lint(run.config, run.observed.migrations, run.plan.allow_destructive)


def migrate(run: Run) -> Done:
    """Apply pending revisions. A failure is judged by the next step, which says exactly where
    the schema was left (MySQL DDL is not transactional), and blocks there."""
    if not run.observed.migrations.pending:
        run.emit(EventKind.SCHEMA, {"schema_after": run.observed.migrations.current})
        return Done("passed", "nothing pending")
    try:
        result = step_calls.migrate(run.config)
    except GangwayError as exc:
        run.migrate_error = exc
        return Done("failed", exc.message)
    run.emit(EventKind.SCHEMA, {"schema_after": result.after})
    return Done()


def migration_applied(run: Run) -> GateResult:
    """The version table and the real columns agree; after a failed migrate the deploy stops
    here, with this evidence when it shows the damage, else with the migrate error itself."""
    result = step_calls.migration_applied(run.config, run.observed.migrations)
    if run.migrate_error is not None and not result.failures:
        raise run.migrate_error
    return result


def verify_columns(run: Run) -> GateResult:
    """Every column the code writes exists with a compatible type."""
    return step_calls.verify_columns(run.config, run.observed.migrations)


def config_gate(run: Run) -> GateResult:
    """The functions' deployed configuration covers what the handlers need."""
    return step_calls.config_gate(run.config, run.observed.live)


def deploy(run: Run) -> GateResult | Done:
    """Update every function's code by digest and publish a version each. A version that
    would not run the gated digest is a failed gate: the deploy is blocked before any alias
    moves, with the expected and found digests as evidence."""
    assert run.pushed is not None
    try:
        run.versions = step_calls.deploy_versions(
            run.config, run.observed.live, run.pushed.by_digest
        )
    except lambda_publish.ForeignCode as exc:
        return _foreign_code(exc, run.pushed.by_digest)
    run.emit(
        EventKind.VERSIONS,
        {
            "functions": {
                key: {"name": v.name, "version_after": v.version, "image_after": v.image_uri}
                for key, v in run.versions.items()
            }
        },
    )
    run.deploy_started_ms = int(time.time() * 1000)
    return Done()


def _foreign_code(exc: lambda_publish.ForeignCode, gated: str) -> GateResult:
    """The published code is not the gated image: a failed gate, so the deploy is blocked."""
    return GateResult(
        gate="published code",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=(
            Check(
                name=f"{exc.function}: code is the gated digest",
                ok=False,
                expected=exc.expected,
                found=exc.found,
                remedy=exc.remedy,
                evidence={"function": exc.function, "gated": gated, "error": exc.message},
            ),
        ),
    )


def shift_traffic(run: Run) -> Done:
    """All at once: every alias to its new version. Canary: split the aliases that change."""
    if not run.plan.traffic.is_canary:
        _setting(run, {v.name: (v.version, {}) for v in run.versions.values()})
        step_calls.shift_aliases(run.config, {v.name: v.version for v in run.versions.values()})
        return Done()
    run.canaried = run.moving_keys()
    for key in sorted(set(run.versions) - run.canaried):
        run.note(f"nothing to shift for {key}: version {run.versions[key].version} already live")
    if not run.canaried:
        found = sorted({v.version for v in run.versions.values()}, key=lambda v: (len(v), v))
        which = (
            f"version {found[0]}"
            if len(found) == 1
            else "versions " + ", ".join(f"{k} {v.version}" for k, v in run.versions.items())
        )
        # A canary of what already serves all traffic cannot be split or baked; the deploy
        # still smokes it through the alias (evidence the live version works) and succeeds.
        run.already_live = (
            f"nothing to shift: {which} already live on alias {run.config.environment.alias} "
            "(no canary split, no bake); smoke, log scan and ground truth verified it"
        )
        run.note(run.already_live)
        return Done("skipped", run.already_live)
    targets = {
        v.name: (run.record.functions[k].version_before or "$LATEST", v.version)
        for k, v in run.versions.items()
        if k in run.canaried
    }
    weight = round(run.plan.traffic.canary_percent / 100, 6)
    _setting(run, {name: (stable, {new: weight}) for name, (stable, new) in targets.items()})
    step_calls.set_canaries(run.config, targets, run.plan.traffic.canary_percent)
    return Done()


def _setting(run: Run, routes: dict[str, tuple[str, dict[str, float]]]) -> None:
    """Note what the next alias calls set, before making them (like the MOVING event)."""
    alias = run.config.environment.alias
    for name, (version, weights) in routes.items():
        run.moved_to[name] = lambda_read.AliasState(name=alias, version=version, weights=weights)


def _qualifier(run: Run, key: str) -> str:
    """Smoke through the alias when it routes all traffic; the version itself in a canary."""
    return run.versions[key].version if key in run.canaried else run.config.environment.alias


def smoke(run: Run) -> GateResult:
    """Invoke every smoke case; validate responses and the versions that ran."""
    result, found = step_calls.smoke_all(
        run.config,
        {key: _qualifier(run, key) for key in run.versions},
        run.correlation_id,
        {key: v.version for key, v in run.versions.items()},
    )
    run.outcomes = list(found)
    return result


def log_scan(run: Run) -> GateResult:
    """Scan the smoked versions' log streams since the deploy; each smoke invoke must be found
    there by its request id (START, END and REPORT), and its REPORT must leave the headroom
    the environment asks for (duration, memory, no timeout)."""
    keys = sorted({c.function for c in run.config.smoke})
    versions = {run.versions[k].name: run.versions[k].version for k in keys}
    results = step_calls.scan_logs(
        run.config, versions, run.deploy_started_ms, request_ids(run.outcomes)
    )
    unsmoked = sorted(set(run.versions) - set(keys))
    if unsmoked:
        run.note(f"log scan skipped for {', '.join(unsmoked)}: no smoke case invokes them")
    return GateResult.combine("log scan", "observability", Strength.OBSERVABILITY, results)


def ground_truth(run: Run) -> GateResult:
    """The rows and objects the smoke cases wrote are really there."""
    cases = {c.name: c for c in run.config.smoke}
    results = [
        step_calls.check_ground_truth(run.config, cases[o.case], o.payload, run.correlation_id)
        for o in run.outcomes
        if cases[o.case].ground_truth is not None
    ]
    return GateResult.combine("ground truth", "data", Strength.GROUND_TRUTH, results)


def bake(run: Run) -> GateResult | Done:
    """Hold the canary for the bake window, then judge the new versions on what they served
    inside it: their invocations in the logs plus every synthetic response, validated."""
    if not run.canaried:
        return Done("skipped", run.already_live)
    window_s = run.plan.traffic.bake_s
    started_ms = int(time.time() * 1000)
    synthetic = _synthetic_traffic(run, time.monotonic() + window_s)
    moving = {k: run.versions[k] for k in sorted(run.canaried)}
    tally = {k: canary.BakeTally.of(synthetic, k, v.version) for k, v in moving.items()}
    stable = {
        v.name: run.record.functions[k].version_before or "$LATEST" for k, v in moving.items()
    }
    # The stable versions' invocations in the same window are the comparison's baseline (the
    # synthetic invokes that ran them, and any real traffic they served). Both sides are read
    # side by side, so their waits for log delivery overlap instead of adding up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        new_side = pool.submit(
            step_calls.count_canary,
            run.config,
            {v.name: v.version for v in moving.values()},
            started_ms,
            {v.name: tally[k].awaited for k, v in moving.items()},
            unreached={v.name for k, v in moving.items() if not tally[k].new},
        )
        # No `unreached` wait on the stable side: a stable error read too early can only make
        # the canary look worse, never better.
        old_side = pool.submit(
            step_calls.count_canary,
            run.config,
            stable,
            started_ms,
            {v.name: tally[k].stable_awaited for k, v in moving.items()},
            unreached=(),
        )
        counts, stable_counts = new_side.result(), old_side.result()
    for key, version in moving.items():
        tally[key].add_logs(counts[version.name])
        tally[key].add_stable_logs(stable_counts[version.name])
    verdict = canary.judge_bake(
        run.config.environment,
        canary.BakeWindow(bake_s=window_s, canary_percent=run.plan.traffic.canary_percent),
        tally,
        synthetic,
    )
    run.inconclusive = verdict.inconclusive
    # The bake's own invocations must leave the same headroom as the smoke's did.
    room = GateResult.combine(
        "headroom", "observability", Strength.OBSERVABILITY,
        step_calls.bake_headroom(run.config, counts),
    )
    return verdict.result.model_copy(
        update={"checks": verdict.result.checks + room.checks}
    )


# The bake waits in slices this long and checks the deploy lock between them: a lock lost
# during a quiet bake is acted on within about a second.
BAKE_SLICE_S = 0.5


def _synthetic_traffic(run: Run, deadline: float) -> list[SmokeOutcome]:
    """Send the smoke cases without ground truth through the alias until the window ends
    (the bake is never cut short, except by a lost deploy lock); with synthetic traffic off,
    only wait."""
    policy = run.config.environment.deploy
    cases = [c for c in run.config.smoke if c.ground_truth is None and c.function in run.canaried]
    if not policy.bake_synthetic:
        cases = []
    sent: list[SmokeOutcome] = []
    while deadline - time.monotonic() > 0:
        run.fence()
        for case in cases:
            if time.monotonic() >= deadline:
                break
            run.fence()
            sent.append(
                smoke_invoke(run.config, case, run.config.environment.alias, run.correlation_id)
            )
        pause = policy.bake_invoke_interval_s if cases else deadline - time.monotonic()
        _fenced_sleep(run, max(0.0, min(pause, deadline - time.monotonic())))
    return sent


def _fenced_sleep(run: Run, seconds: float) -> None:
    """Sleep in slices of at most BAKE_SLICE_S, checking the lock and interrupts between."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        interrupts.sleep(min(BAKE_SLICE_S, left))
        run.fence()


def full_shift(run: Run) -> Done:
    """After a passing bake: all traffic to the new versions."""
    if not run.canaried:
        return Done("skipped", run.already_live)
    targets = {run.versions[k].name: run.versions[k].version for k in run.canaried}
    _setting(run, {name: (version, {}) for name, version in targets.items()})
    step_calls.shift_aliases(run.config, targets)
    return Done()


HANDLERS: dict[StepKind, Callable[[Run], GateResult | Done]] = {
    StepKind.BUILD: build,
    StepKind.REUSE: reuse_image,
    StepKind.PULL: pull,
    StepKind.IMAGE_GATE: image_gate,
    StepKind.PUSH: push,
    StepKind.MIGRATION_LINT: migration_lint,
    StepKind.MIGRATE: migrate,
    StepKind.MIGRATION_APPLIED: migration_applied,
    StepKind.VERIFY_COLUMNS: verify_columns,
    StepKind.CONFIG_GATE: config_gate,
    StepKind.DEPLOY: deploy,
    StepKind.SHIFT_TRAFFIC: shift_traffic,
    StepKind.SMOKE: smoke,
    StepKind.LOG_SCAN: log_scan,
    StepKind.GROUND_TRUTH: ground_truth,
    StepKind.BAKE: bake,
    StepKind.FULL_SHIFT: full_shift,
}
