"""Shared fixtures: ONE rehearsal stack and ONE reference image per test session.

Tests talk to real components (dockerd, the local registry, MariaDB, moto over HTTP with the
function's own image under the RIE). The stack is idempotent: a second `up` costs seconds.

Lanes: `make test` runs two pytest-xdist workers (``-n 2 --dist loadgroup``) on the one stack,
each owning the environments it deploys to. Lane ``qa`` is the fault matrix (tests/faults/,
GANGWAY_FAULTS_ENV, default qa) and the modules marked ``xdist_group("qa")``; lane ``main`` is
every other stack test (dev, staging, prod and the second services). Tests without the stack
fill in on whichever worker is free. A test marked ``alone`` kills or
restarts a daemon both lanes use: it waits until no other stack test runs, and none starts
until it has finished (``stack_turn``).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker as docker_sdk
import pytest
from xdist.scheduler import LoadGroupScheduling

from gangway.config import (
    DeployConfig,
    apply_env_file,
    available_environments,
    gangway_home,
    load_config,
)
from tasks.image_build import BuiltImage, build_image
from tasks.registry import PushedImage, push_image
from tasks.source import source_revision

# At import, not in pytest_configure: pytest imports the conftests of the paths it is given
# (tests/faults/ imports the flows, hence Prefect) before configure hooks run, and Prefect
# reads its API URL once, at import.
apply_env_file()

FAULTS_DIR = Path(__file__).parent / "faults"


LANES_FILE = "tests.lanes.json"


def uses_stack(item: pytest.Item) -> bool:
    """Whether a test talks to the rehearsal stack (marked, or asking for the fixture)."""
    return item.get_closest_marker("stack") is not None or "stack" in getattr(
        item, "fixturenames", ()
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every stack test in a lane: tests/faults/ in qa and the others in main, unless
    marked ``xdist_group``; a test without the stack goes wherever a worker is free. A worker
    writes the lanes down for the scheduler (below)."""
    lanes = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            lanes[item.nodeid] = str(mark.args[0])
        elif uses_stack(item):
            lanes[item.nodeid] = "qa" if FAULTS_DIR in item.path.parents else "main"
    if os.environ.get("PYTEST_XDIST_WORKER"):
        target = gangway_home() / LANES_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(lanes))
        os.replace(tmp, target)


class LaneScheduling(LoadGroupScheduling):
    """--dist loadgroup by lane. pytest-xdist groups by an ``@group`` suffix its workers add
    to each node id, which pytest 9 no longer lets a plugin change; so the controller (which
    collects nothing) reads the lanes the workers wrote, once all of them have collected."""

    _lanes: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._lanes is None:
            self._lanes = json.loads((gangway_home() / LANES_FILE).read_text())
        return self._lanes.get(nodeid, nodeid)


class Lanes:
    """The plugin that gives pytest-xdist the lane scheduler (registered only with xdist)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadGroupScheduling | None:
        """The lane scheduler for ``--dist loadgroup`` (xdist's own for every other mode)."""
        return LaneScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


def pytest_configure(config: pytest.Config) -> None:
    """Register the lanes with pytest-xdist when it is loaded (``-p no:xdist`` runs serially)."""
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(Lanes(), "gangway-lanes")


@contextmanager
def stack_turn(alone: bool) -> Iterator[None]:
    """Hold the stack for one test: shared with the other lane's test, or alone.

    Two locks, so that an alone test is not starved: a shared taker passes the gate (held by
    an alone test for its whole run) and takes the stack shared; an alone taker closes the
    gate, then waits for the running shared holders to finish."""
    home = gangway_home()
    home.mkdir(parents=True, exist_ok=True)
    with (home / "tests.gate").open("a") as gate, (home / "tests.stack").open("a") as held:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(held, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A stack test runs its setup, call and teardown (module fixtures too) in its turn."""
    if not uses_stack(item):
        return (yield)
    with stack_turn(alone=item.get_closest_marker("alone") is not None):
        return (yield)


@pytest.fixture(scope="session")
def stack() -> object:
    """The rehearsal stack, brought up once (cheap when it is already running)."""
    from rehearsal import stack as rehearsal_stack

    status = rehearsal_stack.up()  # one worker at a time: up() holds the home's stack lock
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
