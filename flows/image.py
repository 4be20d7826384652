"""The PR gate: build → in-image gate, the configuration contract of every environment and
the lint of the migrations the change adds; a push only when asked. No AWS call, no database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.request import resolve_source
from gangway.config import DeployConfig, load_config
from gangway.errors import ConfigError, GangwayError
from gangway.evidence import Check, GateResult, Status, Strength
from gangway.gate_report import TimedGate, passed
from gangway.render import gate_markdown, slug
from tasks import step_calls
from tasks.added_migrations import MergeBase, added_revisions_gate, merge_base
from tasks.config_contract import contract_gate, declarations
from tasks.image_build import BuiltImage
from tasks.prefect_task import step
from tasks.registry import PushedImage
from tasks.source import SourceRevision

build = step("build", timeout_s=1200)(step_calls.build)
gate_image = step("in-image gate", timeout_s=300)(step_calls.gate_image)
push = step("push", timeout_s=900, retries=3)(step_calls.push)


@step("config contract", timeout_s=120)
def check_contract(config: DeployConfig) -> GateResult:
    """Every environment's declared env keys against what each function requires."""
    return contract_gate(declarations(config.root))


@step("migration lint (added revisions)", timeout_s=300)
def lint_added(config: DeployConfig, base: MergeBase) -> GateResult:
    """The revisions the change adds over the merge-base, linted offline."""
    return added_revisions_gate(config.root, config.migrations_dir, base)


@dataclass(frozen=True)
class ImageOutcome:
    """What the gate proved: the built image (None: the build failed), every gate's result in
    order, and the pushed digest (None: not asked, or a gate failed)."""

    built: BuiltImage | None
    revision: SourceRevision
    base: MergeBase
    gates: tuple[TimedGate, ...]
    pushed: PushedImage | None

    @property
    def passed(self) -> bool:
        """No gate failed."""
        return passed(self.gates)

    @property
    def gate(self) -> GateResult:
        """The in-image gate's result."""
        return next(g.result for g in self.gates if g.result.gate == "in-image import")


class GatesFailed(GangwayError):
    """At least one gate failed; carries the whole outcome for the reports."""

    boundary = "gate"

    def __init__(self, outcome: ImageOutcome) -> None:
        self.outcome = outcome
        failed = [g.result for g in outcome.gates if g.result.status is Status.FAILED]
        super().__init__(
            f"the gate failed: {', '.join(g.gate for g in failed)}",
            expected="every gate passes",
            found="; ".join(g.summary() for g in failed),
            remedy=" ".join(sorted({c.remedy for g in failed for c in g.failures if c.remedy}))[
                :2000
            ],
        )


def _timed(run: Callable[[], GateResult]) -> TimedGate:
    started = datetime.now(UTC)
    return TimedGate(run(), started)


def _build_gate(
    config: DeployConfig, revision: SourceRevision
) -> tuple[BuiltImage | None, TimedGate]:
    """The build as a gate of one check: a Dockerfile that does not build fails the gate (a
    configuration error, bad input, still raises)."""
    started = datetime.now(UTC)
    dockerfile = f"{config.service.build.context}/{config.service.build.dockerfile}"
    expected = f"an image built from {dockerfile} at {revision.tag[:19]}"
    try:
        built = build(config, revision)
    except ConfigError:
        raise
    except GangwayError as exc:
        elapsed = (datetime.now(UTC) - started).total_seconds()
        check = Check(
            name="image builds",
            ok=False,
            expected=exc.expected or expected,
            found=f"{exc.message}: {exc.found}" if exc.found else exc.message,
            remedy=exc.remedy or f"fix {dockerfile}",
        )
        return None, TimedGate(
            GateResult(
                gate="build",
                boundary="build",
                strength=Strength.SURFACE,
                checks=(check,),
                duration_s=elapsed,
            ),
            started,
        )
    check = Check(
        name="image builds",
        ok=True,
        expected=expected,
        found=f"{built.reference} ({built.architecture}; vendor {built.vendor_s:.1f}s, "
        f"build {built.build_s:.1f}s)",
    )
    result = GateResult(
        gate="build",
        boundary="build",
        strength=Strength.SURFACE,
        checks=(check,),
        duration_s=built.vendor_s + built.build_s,
    )
    return built, TimedGate(result, started)


@flow(name="build-and-gate", log_prints=True)
def build_and_gate(
    env: str, push_image: bool = False, project: str | None = None, base: str | None = None
) -> ImageOutcome:
    """The PR gate for the checkout at project: build the image of env's configuration and
    import every function's effective handler inside it; check every environment's
    configuration contract; lint the migrations added since the merge-base with base (default
    origin/main, else main). Push by digest only with push_image, and only when all passed.

    No AWS reads: functions with functions.X.command_override have their declared handler
    imported (the override is read and checked at deploy time); every other function is judged
    against the image's CMD. Raises GatesFailed (carrying the outcome) when a gate failed."""
    # The same revision a deploy would record: a build input outside the repository makes
    # it dirty, so an image built from it is never tagged or pushed as a clean commit.
    config, revision = resolve_source(load_config(env, project=project), None)
    against = merge_base(config.root, base)
    gates: list[TimedGate] = []
    built, built_gate = _build_gate(config, revision)
    gates.append(built_gate)
    if built is not None:
        gates.append(_timed(lambda: gate_image(config, built)))
    else:
        gates.append(
            TimedGate(
                GateResult(
                    gate="in-image import",
                    boundary="process",
                    strength=Strength.CONTENT,
                    skipped_reason="the image did not build",
                ),
                datetime.now(UTC),
            )
        )
    gates.append(_timed(lambda: check_contract(config)))
    gates.append(_timed(lambda: lint_added(config, against)))
    pushed = None
    if push_image and built is not None and passed(gates):
        started = datetime.now(UTC)
        pushed = push(config, built)
        gates.append(
            TimedGate(
                GateResult(
                    gate="push",
                    boundary="registry",
                    strength=Strength.SURFACE,
                    checks=(
                        Check(
                            name="pushed by digest",
                            ok=True,
                            expected=f"{built.reference} in {config.environment.registry}",
                            found=pushed.by_digest,
                        ),
                    ),
                    duration_s=pushed.push_s,
                ),
                started,
            )
        )
    for timed in gates:
        result = timed.result
        create_markdown_artifact(
            key=f"{env}-gate-{slug(result.gate)}",
            markdown=gate_markdown(result),
            description=result.summary(),
        )
    outcome = ImageOutcome(
        built=built, revision=revision, base=against, gates=tuple(gates), pushed=pushed
    )
    if not outcome.passed:
        raise GatesFailed(outcome)
    return outcome
