"""Shared fixtures: ONE rehearsal stack and ONE reference image per test session.

Tests talk to real components (dockerd, the local registry, MariaDB, moto over HTTP with the
function's own image under the RIE). The stack is idempotent: a second `up` costs seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker as docker_sdk
import pytest

from gangway.config import DeployConfig, apply_env_file, available_environments, load_config
from tasks.image_build import BuiltImage, build_image
from tasks.registry import PushedImage, push_image
from tasks.source import source_revision

# At import, not in pytest_configure: pytest imports the conftests of the paths it is given
# (tests/faults/ imports the flows, hence Prefect) before configure hooks run, and Prefect
# reads its API URL once, at import.
apply_env_file()


@pytest.fixture(scope="session")
def stack() -> object:
    """The rehearsal stack, brought up once (cheap when it is already running)."""
    from rehearsal import stack as rehearsal_stack

    status = rehearsal_stack.up()
    apply_env_file()
    return status


@pytest.fixture(scope="session")
def reconcilers_paused(stack: object) -> list[str]:
    """Every reconcile-<env> deployment paused for the session, and nothing resumed after it.

    A scheduled reconciler would close a killed deploy before the next deploy does (what the
    kill-then-rerun rows assert), or restore an alias a row moved on purpose; the reconciler's
    own rows resume their environment's for the row (rehearsal.reconcilers).
    """
    from rehearsal import reconcilers

    return reconcilers.pause(available_environments())


@pytest.fixture(autouse=True)
def _no_reconciler_unless_asked(request: pytest.FixtureRequest) -> None:
    # Only tests on the stack: a unit test must not bring the stack up to pause anything.
    if "stack" in request.fixturenames:
        request.getfixturevalue("reconcilers_paused")


@pytest.fixture(scope="session")
def dev_config(stack: object) -> DeployConfig:
    """The validated configuration of the `dev` rehearsal environment."""
    return load_config("dev")


@pytest.fixture(scope="session")
def docker(stack: object) -> Iterator[docker_sdk.DockerClient]:
    """A Docker SDK client for the stack's engine."""
    client = docker_sdk.from_env(timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def service_image(docker: docker_sdk.DockerClient, dev_config: DeployConfig) -> BuiltImage:
    """The reference service image, built once per session from the working tree."""
    revision = source_revision(dev_config.root, [dev_config.build_context])
    return build_image(docker, dev_config, revision)


@pytest.fixture(scope="session")
def pushed_image(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, service_image: BuiltImage
) -> PushedImage:
    """The reference image pushed to the local registry, with the digest read back."""
    return push_image(
        docker,
        dev_config.environment.registry,
        dev_config.service.build.repository,
        service_image.tag,
    )
