"""Deciding, apart from doing: the deploy plan, built from observed state, printable as a dry run.

``make_plan`` is pure: given the configuration, the revision and what was read from AWS and
the database, it lists the steps in order and what each would change. A dry run renders it;
the deploy flow executes it. Neither branches on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gangway.config import DeployConfig
from gangway.render import table


@dataclass(frozen=True)
class Traffic:
    """How traffic moves to the new versions: all at once, or a canary that bakes first."""

    canary_percent: int = 0
    bake_s: int = 0

    @property
    def is_canary(self) -> bool:
        """True when a canary weight is set."""
        return self.canary_percent > 0

    def describe(self) -> str:
        """Human words for the mode."""
        if not self.is_canary:
            return "all at once"
        return f"canary {self.canary_percent}% for {self.bake_s}s, then all"


@dataclass(frozen=True)
class PlannedFunction:
    """A function the deploy moves: where its alias points now."""

    key: str
    name: str
    alias: str
    current_version: str | None
    current_image: str | None


class StepKind(StrEnum):
    """What a step does; the executor runs each kind with its own code."""

    BUILD = "build"
    REUSE = "reuse image"
    PULL = "pull"
    IMAGE_GATE = "in-image gate"
    PUSH = "push"
    MIGRATION_LINT = "migration lint"
    MIGRATE = "migrate"
    MIGRATION_APPLIED = "migration applied"
    VERIFY_COLUMNS = "verify columns"
    CONFIG_GATE = "config gate"
    DEPLOY = "deploy"
    SHIFT_TRAFFIC = "shift traffic"
    SMOKE = "smoke"
    LOG_SCAN = "log scan"
    GROUND_TRUTH = "ground truth"
    BAKE = "bake"
    FULL_SHIFT = "full shift"


class Compensation(StrEnum):
    """What undoes a step when the deploy stops after (or during) it."""

    NONE = "block (nothing changed)"
    RESTORE_ALIASES = "roll the aliases back to the recorded versions"
    KEEP = "stays (expand-only; not rolled back)"


@dataclass(frozen=True)
class PlannedStep:
    """One instruction: what it does, where, what it moves, and how a failure is handled.

    ``moves_traffic`` steps are the only ones that change what callers reach; once one has
    run (or started), every later failure restores the aliases. Timeout and retries are the
    step's Prefect task policy; only transient failures are retried.
    """

    kind: StepKind
    boundary: str
    action: str
    compensation: Compensation = Compensation.NONE
    moves_traffic: bool = False
    gate: bool = False
    timeout_s: float = 120
    retries: int = 0

    @property
    def name(self) -> str:
        """The step's name in the record and in Prefect."""
        return self.kind.value

    @property
    def on_failure(self) -> str:
        """What a failure here does, in words."""
        if self.compensation is Compensation.KEEP:
            return "judged by 'migration applied' (where the schema stopped); revisions stay"
        return self.compensation.value


@dataclass(frozen=True)
class DeployPlan:
    """Everything a deploy will do, in order."""

    env: str
    commit_sha: str
    dirty: bool
    image_repository: str
    image_tag: str
    traffic: Traffic
    allow_destructive: bool
    schema_current: str | None
    schema_head: str | None
    pending_migrations: tuple[tuple[str, str], ...]
    functions: tuple[PlannedFunction, ...]
    smoke_cases: tuple[str, ...]
    steps: tuple[PlannedStep, ...] = field(default=())
    promoted_image: str = ""
    reusable_image: str = ""
    # Gates this service does not have, each with why (it declares no database, no ground
    # truth...): printed in the dry run and noted on the record, never silently missing.
    absent: tuple[tuple[str, str], ...] = ()
    # The strongest evidence the plan's gates can reach after traffic moves.
    evidence: str = "content"


def absent_gates(config: DeployConfig) -> list[tuple[str, str]]:
    """The gates a deploy of this service will not run, and the declaration that says so."""
    missing: list[tuple[str, str]] = []
    if config.environment.database is None:
        for kind in (StepKind.MIGRATION_LINT, StepKind.MIGRATE, StepKind.MIGRATION_APPLIED,
                     StepKind.VERIFY_COLUMNS):
            missing.append((kind.value, "no [environment.database] declared"))
    else:
        if config.migrations_dir is None:
            for kind in (StepKind.MIGRATION_LINT, StepKind.MIGRATE, StepKind.MIGRATION_APPLIED):
                missing.append((kind.value, "no service.migrations declared"))
        if not config.tables:
            missing.append((StepKind.VERIFY_COLUMNS.value, "no [[tables]] declared"))
    if not config.has_ground_truth:
        missing.append(
            (StepKind.GROUND_TRUTH.value, "no smoke case declares ground_truth")
        )
    return missing


def make_plan(
    config: DeployConfig,
    *,
    commit_sha: str,
    dirty: bool,
    image_tag: str,
    traffic: Traffic,
    allow_destructive: bool,
    schema_current: str | None,
    schema_head: str | None,
    pending: list[tuple[str, str]],
    functions: list[PlannedFunction],
    promoted_image: str = "",
    reusable_image: str = "",
) -> DeployPlan:
    """The ordered steps of one deploy, from configuration and observed state (pure).

    promoted_image: pull that validated image instead of building; reusable_image: this clean
    commit's image is already pushed and verifies, so it is reused instead of built.
    """
    alias = config.environment.alias
    names = ", ".join(f.name for f in functions)
    migrations = ", ".join(f"{rev} ({msg})" for rev, msg in pending) if pending else "none pending"
    restore = Compensation.RESTORE_ALIASES
    if promoted_image:
        image_step = PlannedStep(
            StepKind.PULL, "registry", f"pull the validated {promoted_image}", timeout_s=900,
            retries=3,
        )
    elif reusable_image:
        image_step = PlannedStep(
            StepKind.REUSE, "registry",
            f"no build: {reusable_image} is this commit's, verified; pull it if not local",
            timeout_s=900, retries=3,
        )
    else:
        image_step = PlannedStep(
            StepKind.BUILD, "process", f"build {config.image_repository}:{image_tag}",
            timeout_s=1200,
        )
    already = promoted_image or reusable_image
    policy = config.environment.deploy
    absent = absent_gates(config)
    skipped = {name for name, _ in absent}
    steps = [
        image_step,
        PlannedStep(
            StepKind.IMAGE_GATE,
            "process",
            f"import {len(config.functions)} handlers inside the image; cwd, Python, arch",
            gate=True,
            timeout_s=300,
        ),
        PlannedStep(
            StepKind.PUSH,
            "registry",
            f"none: {already} is in the registry"
            if already
            else "push; read the manifest digest back",
            timeout_s=900,
            retries=3,
        ),
        PlannedStep(
            StepKind.MIGRATION_LINT,
            "data",
            f"{migrations}; destructive {'allowed' if allow_destructive else 'blocks'}",
            gate=True,
            retries=2,
        ),
        PlannedStep(
            StepKind.MIGRATE,
            "data",
            f"alembic {schema_current or 'base'} → {schema_head} under a named lock"
            if pending
            else f"nothing to apply (at {schema_current})",
            compensation=Compensation.KEEP,
            timeout_s=900,
        ),
        PlannedStep(
            StepKind.MIGRATION_APPLIED,
            "data",
            "the version table and the real columns agree",
            gate=True,
            retries=2,
        ),
        PlannedStep(
            StepKind.VERIFY_COLUMNS,
            "data",
            f"{sum(len(t.columns) for t in config.tables)} written columns vs information_schema",
            gate=True,
            retries=2,
        ),
        PlannedStep(
            StepKind.CONFIG_GATE,
            "deployment",
            "env keys ⊇ required settings; timeout, memory, architecture",
            gate=True,
            timeout_s=60,
        ),
        PlannedStep(
            StepKind.DEPLOY,
            "deployment",
            f"update code by digest, publish a version: {names}",
            timeout_s=600,
            retries=3,
        ),
        PlannedStep(
            StepKind.SHIFT_TRAFFIC,
            "deployment",
            f"alias {alias}: {traffic.describe()}",
            compensation=restore,
            moves_traffic=True,
            retries=3,
        ),
        PlannedStep(
            StepKind.SMOKE,
            "deployment",
            f"{len(config.smoke)} cases: {', '.join(c.name for c in config.smoke)}",
            compensation=restore,
            gate=True,
            timeout_s=900,
        ),
        PlannedStep(
            StepKind.LOG_SCAN,
            "observability",
            "new versions' streams: each smoke invoke's START/END/REPORT within "
            f"{policy.log_ingestion_s:g} s; ERROR, Traceback, timeouts, app lines present; "
            f"headroom: duration ≤ {policy.duration_headroom:.0%} of the timeout (or of a "
            f"client deadline), memory ≤ {policy.memory_headroom:.0%}",
            compensation=restore,
            gate=True,
            # Up to the ingestion window of waiting for the lines, then reading them.
            timeout_s=policy.log_ingestion_s + 150,
            retries=2,
        ),
        PlannedStep(
            StepKind.GROUND_TRUTH,
            "data",
            "rows and objects the smoke cases wrote",
            compensation=restore,
            gate=True,
            retries=2,
        ),
    ]
    steps = [s for s in steps if s.name not in skipped]
    if traffic.is_canary:
        steps += [
            PlannedStep(
                StepKind.BAKE,
                "observability",
                f"{traffic.bake_s}s; error rate of the new version ≤ "
                f"{policy.error_rate_threshold:.0%} over ≥ {policy.min_canary_invocations} "
                "invocations in the window (fewer: inconclusive, rolled back) and shown no "
                f"worse than the stable version's + {policy.noninferiority_margin:.0%} at "
                f"{policy.noninferiority_confidence:.0%} confidence (not shown: inconclusive); "
                "their log lines and headroom",
                compensation=restore,
                gate=True,
                # The bake itself, then up to bake_log_wait_s for its log lines, then counting.
                timeout_s=traffic.bake_s + policy.bake_log_wait_s + 300,
            ),
            PlannedStep(
                StepKind.FULL_SHIFT,
                "deployment",
                f"alias {alias}: all traffic to the new versions",
                compensation=restore,
                moves_traffic=True,
                retries=3,
            ),
        ]
    return DeployPlan(
        env=config.environment.name,
        commit_sha=commit_sha,
        dirty=dirty,
        image_repository=config.image_repository,
        image_tag=image_tag,
        traffic=traffic,
        allow_destructive=allow_destructive,
        schema_current=schema_current,
        schema_head=schema_head,
        pending_migrations=tuple(pending),
        functions=tuple(functions),
        smoke_cases=tuple(c.name for c in config.smoke),
        steps=tuple(steps),
        promoted_image=promoted_image,
        reusable_image=reusable_image,
        absent=tuple(absent),
        evidence="ground-truth" if config.has_ground_truth else "observability",
    )


def render_plan(plan: DeployPlan) -> str:
    """The plan as text: header, steps, and the versions that would move."""
    built = f"{plan.image_repository}:{plan.image_tag}"
    head = [
        f"deploy plan for {plan.env}",
        f"  commit   {plan.commit_sha}{' (dirty tree)' if plan.dirty else ''}",
        f"  image    {plan.promoted_image or plan.reusable_image or built}"
        + (" (promoted, no rebuild)" if plan.promoted_image else "")
        + (" (already pushed, no rebuild)" if plan.reusable_image else ""),
        f"  schema   {plan.schema_current or 'base'} → {plan.schema_head}"
        f" ({len(plan.pending_migrations)} pending)"
        if any(s.kind is StepKind.MIGRATE for s in plan.steps)
        else "  schema   (no migrations in this service's plan)",
        f"  traffic  {plan.traffic.describe()}",
        f"  evidence up to {plan.evidence}",
        "",
    ]
    steps = table(
        ("#", "step", "boundary", "action", "on failure"),
        [
            (n, s.name, s.boundary, s.action, s.on_failure)
            for n, s in enumerate(plan.steps, 1)
        ],
    )
    moves = table(
        ("function", "alias", "now", "after"),
        [(f.name, f.alias, f.current_version or "-", "new version") for f in plan.functions],
    )
    out = "\n".join(head) + steps + "\n\n" + moves
    if plan.absent:
        out += "\n\nnot in this service's plan:\n" + "\n".join(
            f"  {name}: {why}" for name, why in plan.absent
        )
    return out
