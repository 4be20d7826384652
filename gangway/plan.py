"""Deciding, apart from doing: the deploy plan, built from observed state, printable as a dry run.

``make_plan`` is pure: given the configuration, the revision and what was read from AWS and
the database, it lists the steps in order and what each would change. A dry run renders it;
the deploy flow executes it. Neither branches on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class PlannedStep:
    """One step: its boundary, what it will do, and whether a failure there rolls back."""

    name: str
    boundary: str
    action: str
    on_failure: str


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


BLOCK = "block (nothing changed)"
ROLLBACK = "roll the alias back to the recorded version"


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
) -> DeployPlan:
    """The ordered steps of one deploy, from configuration and observed state (pure)."""
    alias = config.environment.alias
    names = ", ".join(f.name for f in functions)
    migrations = ", ".join(f"{rev} ({msg})" for rev, msg in pending) if pending else "none pending"
    if promoted_image:
        image_steps = [
            PlannedStep("pull", "registry", f"pull the validated {promoted_image}", BLOCK)
        ]
    else:
        image_steps = [
            PlannedStep("build", "process", f"build {config.image_repository}:{image_tag}", BLOCK)
        ]
    steps = [
        *image_steps,
        PlannedStep(
            "in-image gate",
            "process",
            f"import {len(config.functions)} handlers inside the image; cwd, Python, arch",
            BLOCK,
        ),
        PlannedStep(
            "push",
            "registry",
            "none: promoted by digest" if promoted_image else "push; read the manifest digest back",
            BLOCK,
        ),
        PlannedStep(
            "migration lint",
            "data",
            f"{migrations}; destructive {'allowed' if allow_destructive else 'blocks'}",
            BLOCK,
        ),
        PlannedStep(
            "migrate",
            "data",
            f"alembic {schema_current or 'base'} → {schema_head} under a named lock"
            if pending
            else f"nothing to apply (at {schema_current})",
            BLOCK,
        ),
        PlannedStep(
            "verify columns",
            "data",
            f"{sum(len(t.columns) for t in config.tables)} written columns vs information_schema",
            BLOCK,
        ),
        PlannedStep(
            "config gate",
            "deployment",
            "env keys ⊇ required settings; timeout, memory, architecture",
            BLOCK,
        ),
        PlannedStep(
            "deploy", "deployment", f"update code by digest, publish a version: {names}", BLOCK
        ),
        PlannedStep(
            "shift traffic", "deployment", f"alias {alias}: {traffic.describe()}", ROLLBACK
        ),
        PlannedStep(
            "smoke",
            "deployment",
            f"{len(config.smoke)} cases: {', '.join(c.name for c in config.smoke)}",
            ROLLBACK,
        ),
        PlannedStep(
            "log scan",
            "observability",
            "new versions' streams: ERROR, Traceback, timeouts, app lines present",
            ROLLBACK,
        ),
        PlannedStep("ground truth", "data", "rows and objects the smoke cases wrote", ROLLBACK),
    ]
    if traffic.is_canary:
        policy = config.environment.deploy
        steps.append(
            PlannedStep(
                "bake",
                "observability",
                f"{traffic.bake_s}s; error rate of the new version ≤ "
                f"{policy.error_rate_threshold:.0%} over ≥ {policy.min_canary_invocations} "
                "invocations in the window (fewer: inconclusive, rolled back); then full shift",
                ROLLBACK,
            )
        )
    steps.append(PlannedStep("record", "ledger", "write the deploy record", "-"))
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
    )


def render_plan(plan: DeployPlan) -> str:
    """The plan as text: header, steps, and the versions that would move."""
    head = [
        f"deploy plan for {plan.env}",
        f"  commit   {plan.commit_sha}{' (dirty tree)' if plan.dirty else ''}",
        f"  image    {plan.promoted_image or f'{plan.image_repository}:{plan.image_tag}'}"
        + (" (promoted, no rebuild)" if plan.promoted_image else ""),
        f"  schema   {plan.schema_current or 'base'} → {plan.schema_head}"
        f" ({len(plan.pending_migrations)} pending)",
        f"  traffic  {plan.traffic.describe()}",
        "",
    ]
    steps = table(
        ("#", "step", "boundary", "action", "on failure"),
        [(n, s.name, s.boundary, s.action, s.on_failure) for n, s in enumerate(plan.steps, 1)],
    )
    moves = table(
        ("function", "alias", "now", "after"),
        [(f.name, f.alias, f.current_version or "-", "new version") for f in plan.functions],
    )
    return "\n".join(head) + steps + "\n\n" + moves
