"""Build skip: a clean commit's pushed image is reused with its digest verified, never otherwise.

Each test deploys its own new scratch commit (rehearsal/scratch_commits.py), so its first
deploy really builds: no earlier run's image can stand in for it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import docker as docker_sdk
import pytest

from flows.deploy import deploy, resolve_source
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.plan import DeployPlan
from rehearsal.scratch_commits import ScratchCommits
from tasks.image_build import build_image
from tasks.image_reuse import decide_reuse, find_reusable
from tasks.ledger import DeployRecord, Outcome
from tasks.registry import RegistryClient, push_image
from tasks.source import SourceRevision

pytestmark = pytest.mark.stack
ENV = "dev"


@pytest.fixture
def commits(dev_config: DeployConfig) -> Iterator[ScratchCommits]:
    """Throw-away commits of the working tree, each with a unique stamp file."""
    context = dev_config.build_context.relative_to(REPO_ROOT)
    paths = [str(context), str(dev_config.migrations_dir.relative_to(REPO_ROOT))]
    with ScratchCommits(REPO_ROOT, paths, str(context / "app" / "build_stamp.py")) as scratch:
        yield scratch


def succeeded(record: object) -> DeployRecord:
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    return record


def step_names(record: DeployRecord) -> list[str]:
    return [s.name for s in record.steps]


def served_digest(config: DeployConfig, tag: str) -> str | None:
    registry = RegistryClient(config.environment.registry)
    try:
        return registry.digest(config.service.build.repository, tag)
    finally:
        registry.close()


def test_second_deploy_of_a_clean_commit_skips_the_build_and_verifies_the_digest(
    commits: ScratchCommits, dev_config: DeployConfig
) -> None:
    sha = commits.commit()
    first = succeeded(deploy(env=ENV, sha=sha))
    assert {"build", "push"} <= set(step_names(first)) and "reuse image" not in step_names(first)
    plan = deploy(env=ENV, sha=sha, dry_run=True)
    assert isinstance(plan, DeployPlan) and plan.reusable_image.endswith(str(first.image_digest))
    second = succeeded(deploy(env=ENV, sha=sha))
    names = step_names(second)
    assert names == [s.name for s in plan.steps]  # the dry run said so, and so it ran
    statuses = {s.name: s.status for s in second.steps}
    assert "build" not in names and statuses["push"] == "skipped", second.steps
    assert not second.dirty and second.commit_sha == sha
    assert second.image_digest == first.image_digest == served_digest(dev_config, sha)
    # The evidence of the skip is on record: the digest recomputed from the manifest's bytes.
    assert any(f"manifest sha256 = {first.image_digest}" in n for n in second.notes), second.notes
    # The reused image still went through the in-image gate, as any image does.
    assert names.index("reuse image") < names.index("in-image gate")


def test_a_moved_tag_is_not_reused_and_the_build_runs(
    commits: ScratchCommits, dev_config: DeployConfig, docker: docker_sdk.DockerClient
) -> None:
    sha = commits.commit()
    first = succeeded(deploy(env=ENV, sha=sha))
    # An image FROM the real one inherits every label (commit, clean, service, recipe): only
    # its digest tells it apart. It is pushed under another tag, then the commit's tag is
    # moved to it over the registry API, as a stray or malicious push would.
    repository = dev_config.image_repository
    dockerfile = f"FROM {repository}:{sha}\nLABEL dev.gangway.test=tampered\n"
    docker.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repository}:tampered")
    tampered = push_image(
        docker, dev_config.environment.registry, dev_config.service.build.repository, "tampered"
    )
    assert tampered.digest != first.image_digest
    registry = RegistryClient(dev_config.environment.registry)
    try:
        registry.tag(dev_config.service.build.repository, tampered.digest, sha)
    finally:
        registry.close()
    assert served_digest(dev_config, sha) == tampered.digest

    config, revision = resolve_source(load_config(ENV), sha)
    decision = decide_reuse(docker, config, revision)
    assert decision.image is None and "the tag moved" in decision.reason, decision.reason

    third = succeeded(deploy(env=ENV, sha=sha))
    names = step_names(third)
    assert "build" in names and "push" in names and "reuse image" not in names, names
    assert {s.name: s.status for s in third.steps}["push"] == "passed"
    assert third.image_digest != tampered.digest
    assert served_digest(dev_config, sha) == third.image_digest  # the push put it back


def test_a_dirty_tree_is_never_reused(
    commits: ScratchCommits, docker: docker_sdk.DockerClient, tmp_path: Path
) -> None:
    sha = commits.commit()
    config, revision = resolve_source(load_config(ENV), sha)
    assert not revision.dirty
    built = build_image(docker, config, revision)
    push_image(docker, config.environment.registry, config.service.build.repository, built.tag)
    assert find_reusable(docker, config, revision) is not None  # the control: clean reuses

    dirty = SourceRevision(sha=sha, dirty=True)
    assert find_reusable(docker, config, dirty) is None
    # Another recipe (here a build arg) is another image, even for the same clean commit.
    build = config.service.build.model_copy(
        update={"build_args": {**config.service.build.build_args, "EXTRA": "1"}}
    )
    other = config.model_copy(
        update={"service": config.service.model_copy(update={"build": build})}
    )
    decision = decide_reuse(docker, other, revision)
    assert decision.image is None and "recipe" in decision.reason, decision.reason

    # End to end: the same commit with a byte-identical Dockerfile from outside the repository
    # is a dirty tree (its image is not what the SHA describes): it builds, never reuses.
    outside = tmp_path / "Dockerfile"
    outside.write_text((config.build_context / config.service.build.dockerfile).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANGWAY_SERVICE__BUILD__DOCKERFILE", str(outside))
        record = succeeded(deploy(env=ENV, sha=sha))
    assert record.dirty and "build" in step_names(record)
    assert "reuse image" not in step_names(record)
