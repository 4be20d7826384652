"""A restore never undoes another deploy's move (tasks/lambda_alias.py, on the real moto).

A deploy that lost its lock restores only aliases that still route as it left them. These
tests use a throwaway function with three published versions, so the environments' aliases
and versions are never touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alias_reads import settled_alias

from gangway.config import DeployConfig, load_config
from rehearsal.lambda_waits import wait_active, wait_updated
from tasks.aws import client
from tasks.lambda_alias import SUPERSEDED, restore_aliases, set_canary, shift_alias
from tasks.lambda_read import AliasState

# The fault matrix's environment, so this module runs in its lane (tests/conftest.py).
pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("qa")]

ENV = os.environ.get("GANGWAY_FAULTS_ENV", "qa")


@pytest.fixture(scope="module")
def config(stack: object) -> DeployConfig:
    """The environment whose AWS endpoint and alias name the tests use."""
    return load_config(ENV)


@pytest.fixture(scope="module")
def scratch(config: DeployConfig) -> Iterator[tuple[str, list[str]]]:
    """A function of our own with versions 1..3 and the environment's alias on version 1."""
    lam: Any = client(config, "lambda")
    model = lam.get_function(FunctionName=next(iter(config.functions.values())).name)
    name = f"gangway-test-restore-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        PackageType="Image",
        Code={"ImageUri": model["Code"]["ImageUri"]},
        Role=model["Configuration"]["Role"],
        Publish=True,
    )
    wait_active(lam, name)  # Pending first, as on AWS: the update would be refused
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    for n in (2, 3):  # a configuration change makes the next publish a new version
        lam.update_function_configuration(FunctionName=name, Description=f"v{n}")
        wait_updated(lam, name)  # a publish during the update would be refused
        lam.publish_version(FunctionName=name)
    versions = [
        v["Version"]
        for v in lam.list_versions_by_function(FunctionName=name)["Versions"]
        if v["Version"] != "$LATEST"
    ]
    assert len(versions) >= 3, versions
    lam.create_alias(FunctionName=name, Name=config.environment.alias, FunctionVersion=versions[0])
    yield name, versions[:3]
    lam.delete_function(FunctionName=name)


def _state(
    config: DeployConfig, version: str, weights: dict[str, float] | None = None
) -> AliasState:
    return AliasState(name=config.environment.alias, version=version, weights=weights or {})


def test_an_alias_as_this_deploy_left_it_is_restored(
    config: DeployConfig, scratch: tuple[str, list[str]]
) -> None:
    name, (v1, v2, _v3) = scratch
    shift_alias(config, name, v1)
    mine = set_canary(config, name, v1, v2, 50)
    result = restore_aliases(config, {name: _state(config, v1)}, moved_to={name: mine})
    assert isinstance(result[name], AliasState) and result[name].routes_like(_state(config, v1))
    assert settled_alias(config, name).routes_like(_state(config, v1))


def test_an_alias_another_deploy_moved_is_left_alone_and_said_so(
    config: DeployConfig, scratch: tuple[str, list[str]]
) -> None:
    name, (v1, v2, v3) = scratch
    shift_alias(config, name, v1)
    set_canary(config, name, v1, v2, 50)  # this deploy's canary...
    theirs = shift_alias(config, name, v3)  # ...then another deploy moved the alias
    result = restore_aliases(
        config, {name: _state(config, v1)}, moved_to={name: _state(config, v1, {v2: 0.5})}
    )
    said = result[name]
    assert isinstance(said, str) and said.startswith("not restored: alias now routes")
    assert said.endswith(SUPERSEDED) and f"→ {v3}" in said, said
    now = settled_alias(config, name)
    assert now.routes_like(theirs) and now.revision_id == theirs.revision_id, "it was written"


def test_an_alias_already_back_needs_no_write(
    config: DeployConfig, scratch: tuple[str, list[str]]
) -> None:
    name, (v1, v2, _v3) = scratch
    back = shift_alias(config, name, v1)  # another deploy's recovery already put it back
    result = restore_aliases(
        config, {name: _state(config, v1)}, moved_to={name: _state(config, v2)}
    )
    assert isinstance(result[name], AliasState) and result[name].routes_like(back)
    assert settled_alias(config, name).revision_id == back.revision_id, "a no-op was written"


def test_a_full_shift_that_stopped_part_way_is_still_this_deploys_to_restore(
    config: DeployConfig, scratch: tuple[str, list[str]]
) -> None:
    name, (v1, v2, _v3) = scratch
    shift_alias(config, name, v1)
    set_canary(config, name, v1, v2, 50)  # the full shift to v2 was being set, not reached
    result = restore_aliases(
        config, {name: _state(config, v1)}, moved_to={name: _state(config, v2)}
    )
    assert isinstance(result[name], AliasState), result[name]
    assert settled_alias(config, name).routes_like(_state(config, v1))
