"""Build → in-image gate → push: the image half of a deploy, runnable on its own."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.request import resolve_source
from gangway.config import load_config
from gangway.evidence import GateResult
from gangway.render import gate_markdown
from tasks import step_calls
from tasks.image_build import BuiltImage
from tasks.prefect_task import step
from tasks.registry import PushedImage

build = step("build", timeout_s=1200)(step_calls.build)
gate_image = step("in-image gate", timeout_s=300)(step_calls.gate_image)
push = step("push", timeout_s=900, retries=3)(step_calls.push)


@dataclass(frozen=True)
class ImageOutcome:
    """What the image half proved: the built image, its gate result, and the pushed digest."""

    built: BuiltImage
    gate: GateResult
    pushed: PushedImage | None


@flow(name="build-and-gate", log_prints=True)
def build_and_gate(env: str, push_image: bool = True, project: str | None = None) -> ImageOutcome:
    """Build the service image (of the checkout at project), import every handler inside it,
    then push it by digest.

    No AWS reads here: functions with functions.X.command_override run their handler through
    the override a deploy's gate reads and checks; every other function is judged against the
    image's CMD."""
    # The same revision a deploy would record: a build input outside the repository makes
    # it dirty, so an image built from it is never tagged or pushed as a clean commit.
    config, revision = resolve_source(load_config(env, project=project), None)
    built = build(config, revision)
    gate = gate_image(config, built)
    create_markdown_artifact(
        key=f"{env}-image-gate", markdown=gate_markdown(gate), description=gate.summary()
    )
    gate.raise_if_failed()
    pushed = push(config, built) if push_image else None
    return ImageOutcome(built=built, gate=gate, pushed=pushed)
