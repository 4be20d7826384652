"""`gangway status` as a user runs it: alias → version → digest → commit → the record behind it.

One deploy of the reference service to staging (the CLI, in its own process) is shared by the
module; then aliases are moved by hand with boto3, as an operator would, and status must stop
crediting gangway for what it did not do. A service without a database shows no schema and
its lease while a lease is held. Every alias moved by hand is put back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alias_reads import settle
from service_repo import KEY, SERVICE, make_service

from flows.status import LiveRouting, LockState, SchemaState, VersionImage, environment_status
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.record import DeployRecord, FunctionMove, Outcome
from tasks import lambda_read, schema
from tasks.aws import client
from tasks.lease_lock import lease_lock
from tasks.ledger import Ledger

ENV = "staging"
TRACEBACK = "Traceback (most recent call last)"


def gangway(*args: str) -> subprocess.CompletedProcess[str]:
    """`gangway <args>` in its own process from the repository root."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )
    assert TRACEBACK not in done.stdout + done.stderr, explain(done)
    return done


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """What to print when an assertion about a run fails."""
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


def status_json(*args: str) -> dict[str, Any]:
    """`gangway status --json <args>`, which must succeed, parsed (one environment)."""
    done = gangway("status", "--json", *args)
    assert done.returncode == 0, explain(done)
    (env,) = json.loads(done.stdout)["environments"]
    return env


def routes(env: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each function's routes, by key."""
    return {fn["key"]: fn["routes"] for fn in env["functions"]}


def row(text: str, key: str) -> list[str]:
    """The table rows of one function in the human output, split into cells."""
    return [line.split() for line in text.splitlines() if line.split()[:1] == [key]]


@pytest.fixture(scope="module")
def config(stack: object) -> DeployConfig:
    """The staging configuration of the reference service."""
    return load_config(ENV)


@pytest.fixture(scope="module")
def deployed(config: DeployConfig) -> DeployRecord:
    """The record of one `gangway deploy --env staging` of the working tree."""
    done = gangway("deploy", "--env", ENV, "--json")
    assert done.returncode == 0, explain(done)
    record = Ledger().get(json.loads(done.stdout)["deploy_id"])
    assert record is not None and record.outcome is Outcome.SUCCEEDED
    return record


@pytest.fixture
def lam(config: DeployConfig) -> Any:
    """A Lambda client of the staging environment."""
    return client(config, "lambda")


def other_version(lam: Any, name: str, current: str) -> str:
    """An existing published version of name other than current."""
    versions = [
        v["Version"]
        for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
        for v in page["Versions"]
        if v["Version"] not in ("$LATEST", current)
    ]
    assert versions, f"{name} has no version besides {current} (the seed publishes one)"
    return versions[0]


@pytest.fixture
def hand_moved(
    lam: Any, config: DeployConfig, deployed: DeployRecord, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str, str]]:
    """One function's alias moved by hand (key, the deploy's version, the hand's version);
    routing weights when the test is parametrized with them. Put back afterwards."""
    key, weighted = request.param
    name, alias = config.functions[key].name, config.environment.alias
    deployed_version = deployed.functions[key].version_after
    assert deployed_version
    other = other_version(lam, name, deployed_version)
    if weighted:
        lam.update_alias(
            FunctionName=name,
            Name=alias,
            FunctionVersion=deployed_version,
            RoutingConfig={"AdditionalVersionWeights": {other: 0.1}},
        )
    else:
        lam.update_alias(FunctionName=name, Name=alias, FunctionVersion=other)
    settle(config)  # status is judged on the settled alias, not on a stale read of it
    try:
        yield key, deployed_version, other
    finally:
        lam.update_alias(
            FunctionName=name,
            Name=alias,
            FunctionVersion=deployed_version,
            RoutingConfig={"AdditionalVersionWeights": {}},
        )
        settle(config)
        state = lambda_read.read_alias(config, name)
        assert (state.version, state.weights) == (deployed_version, {})


@pytest.mark.stack
def test_status_shows_every_function_of_the_deploy(
    config: DeployConfig, deployed: DeployRecord
) -> None:
    """Each function routes only to the deploy's version, running its digest, built from its
    commit and put there by its record; the schema is at head; nothing is in progress."""
    env = status_json("--env", ENV)
    assert env["env"] == ENV and env["service"] == "daily-report" and env["error"] is None
    found = routes(env)
    assert set(found) == set(config.functions)
    for key, (route,) in found.items():
        assert route["version"] == deployed.functions[key].version_after, key
        assert route["weight"] == 1.0
        assert route["digest"] == deployed.image_digest
        assert route["commit_sha"] == deployed.commit_sha
        assert route["from_gangway"] is True
        placed = route["placed_by"]
        assert placed["deploy_id"] == deployed.deploy_id
        assert (placed["kind"], placed["outcome"]) == ("deploy", "succeeded")
    head = schema.head_revision(config)
    assert env["schema"] == {"declared": True, "revision": head, "head": head, "note": ""}
    assert env["lock"]["kind"] == "named lock" and env["lock"]["holder"] is None
    assert env["in_progress"] == []

    done = gangway("status", "--env", ENV)
    assert done.returncode == 0, explain(done)
    assert f"schema       {head} (head)" in done.stdout
    for key in config.functions:
        (cells,) = row(done.stdout, key)
        assert cells[1] == deployed.functions[key].version_after
        assert cells[4] == deployed.commit_sha[:12]
        assert cells[5:] == ["deploy", deployed.deploy_id[:12], "succeeded"]


@pytest.mark.stack
@pytest.mark.parametrize("hand_moved", [("api", False)], indirect=True)
def test_a_hand_moved_alias_is_not_from_gangway(
    hand_moved: tuple[str, str, str], deployed: DeployRecord
) -> None:
    """The alias moved by hand to another existing version: that function is "not from
    gangway"; the others are still the deploy's."""
    key, _, other = hand_moved
    env = status_json("--env", ENV)
    found = routes(env)
    (route,) = found[key]
    assert route["version"] == other
    assert route["from_gangway"] is False and route["placed_by"] is None
    assert route["digest"].startswith("sha256:")
    assert all(r[0]["from_gangway"] for k, r in found.items() if k != key)

    text = gangway("status", "--env", ENV).stdout
    (cells,) = row(text, key)
    assert cells[1] == other and cells[-3:] == ["not", "from", "gangway"]


@pytest.mark.stack
@pytest.mark.parametrize("hand_moved", [("telegram", True)], indirect=True)
def test_a_canary_weight_set_by_hand_shows_the_weights(
    hand_moved: tuple[str, str, str], deployed: DeployRecord
) -> None:
    """90/10 set by hand: both versions are listed with their weights; the deploy's version
    is still the deploy's, the weighted one is not from gangway."""
    key, mine, other = hand_moved
    primary, extra = routes(status_json("--env", ENV))[key]
    assert (primary["version"], extra["version"]) == (mine, other)
    assert primary["weight"] == pytest.approx(0.9) and extra["weight"] == pytest.approx(0.1)
    assert primary["placed_by"]["deploy_id"] == deployed.deploy_id
    assert extra["from_gangway"] is False

    text = gangway("status", "--env", ENV).stdout
    cells = row(text, key)
    assert [(c[1], c[2]) for c in cells] == [(mine, "90%"), (other, "10%")]


@pytest.mark.stack
def test_a_service_without_a_database_shows_no_schema_and_its_lease(
    stack: object, tmp_path: Path
) -> None:
    """No database: schema "-" saying why; the lease's holder while a lease is held, and
    nothing once it is released."""
    repo = make_service(tmp_path / "echo")
    done = gangway("stack", "seed", "--project", str(repo), "--env", "dev")
    assert done.returncode == 0, explain(done)
    args = ("--project", str(repo), "--env", "dev")

    env = status_json(*args)
    assert env["service"] == SERVICE and [f["key"] for f in env["functions"]] == [KEY]
    assert env["schema"] == {
        "declared": False, "revision": None, "head": None, "note": "no database declared"
    }
    assert env["lock"]["kind"] == "lease" and env["lock"]["holder"] is None

    config = load_config("dev", project=repo)
    with lease_lock(config, 5, lambda: "nobody"):
        held = status_json(*args)
        text = gangway("status", *args).stdout
    assert f"pid {os.getpid()}" in held["lock"]["holder"]
    assert "schema       - (no database declared)" in text
    assert f"gangway:deploy:{SERVICE}:dev: " in text and f"pid {os.getpid()}" in text
    assert status_json(*args)["lock"]["holder"] is None

    # An attempt the ledger has not seen settle (a live or killed deploy) is shown, then settled.
    ledger = Ledger()
    running = ledger.write(DeployRecord(env="dev", service=SERVICE, commit_sha="c" * 40))
    try:
        (shown,) = status_json(*args)["in_progress"]
        assert shown["deploy_id"] == running.deploy_id and shown["kind"] == "deploy"
        text = gangway("status", *args).stdout
        assert f"in progress  deploy {running.deploy_id[:12]} of {'c' * 12}" in text
    finally:
        ledger.write(running.model_copy(update={"outcome": Outcome.INTERRUPTED}))
    assert status_json(*args)["in_progress"] == []


@pytest.mark.stack
def test_an_environment_that_cannot_be_read_exits_1_naming_the_boundary(
    stack: object, tmp_path: Path
) -> None:
    """A service whose functions were never created: the aws boundary is named, exit 1."""
    repo = make_service(tmp_path / "unseeded")
    toml = repo / "deployments" / "service.toml"
    toml.write_text(toml.read_text().replace(f'name = "{SERVICE}"', 'name = "gw-unseeded"'))
    done = gangway("status", "--project", str(repo), "--json")
    assert done.returncode == 1, explain(done)
    (env,) = json.loads(done.stdout)["environments"]
    assert env["boundary"] == "aws" and "gw-unseeded-dev-echo does not exist" in env["error"]
    assert "status of dev is incomplete (aws)" in done.stderr


def test_an_unknown_environment_is_bad_input() -> None:
    done = gangway("status", "--env", "nope")
    assert done.returncode == 2, explain(done)
    assert "no environment 'nope'" in done.stderr and "dev, prod, qa, staging" in done.stderr


# --- the join, on records as the ledger folds them ------------------------------------------


def _record(at: int, outcome: Outcome, move: FunctionMove, commit: str) -> DeployRecord:
    return DeployRecord(
        env=ENV,
        service="daily-report",
        commit_sha=commit * 40,
        outcome=outcome,
        functions={"api": move},
        started_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=at),
    )


@pytest.mark.parametrize(
    ("alias", "weights", "expected"),
    [
        # Rolled back to 3: credited to the rolled-back attempt, built by the first deploy.
        ("3", {}, [("3", "a" * 40, "b")]),
        # A later hand move to the version the failed attempt published and left.
        ("4", {}, [("4", "b" * 40, None)]),
        # A canary (10% on 4) set by hand after the rollback: the weighted version is not ours.
        ("3", {"4": 0.1}, [("3", "a" * 40, "b"), ("4", "b" * 40, None)]),
    ],
)
def test_the_join_credits_the_record_that_last_moved_the_alias(
    alias: str, weights: dict[str, float], expected: list[tuple[str, str, str | None]]
) -> None:
    first = _record(0, Outcome.SUCCEEDED, FunctionMove(name="f", version_after="3"), "a")
    rolled = _record(
        5,
        Outcome.ROLLED_BACK,
        FunctionMove(
            name="f", version_before="3", version_after="4", alias_moved=True, restored_to="3"
        ),
        "b",
    )
    config = load_config(ENV)
    live = {
        "api": LiveRouting(
            key="api",
            name="f",
            alias=lambda_read.AliasState(name="live", version=alias, weights=weights),
            images={v: VersionImage(f"sha256:{v}", "") for v in ("3", "4")},
        )
    }
    status = environment_status(
        config, live, [first, rolled], SchemaState(declared=False), LockState("lease", "x", None)
    )
    (fn,) = status.functions
    found = [
        (r.version, r.commit_sha, r.placed_by.commit_sha[0] if r.placed_by else None)
        for r in fn.routes
    ]
    assert found == expected
