"""The nightly drift check on the rehearsal stack: each kind of drift a person can cause is
found with its owner, a clean environment is exit 0, a throttling burst changes nothing, an
endpoint that does not answer is exit 3 (never "no drift").

Each world is a drift-<tag> copy of the reference service (its terraform/ folder included),
seeded on the stack, migrated, with a ledger saying gangway put every alias where it is.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from drift_world import (
    World,
    drift_cli,
    live_env,
    move_alias,
    publish,
    record_deploy,
    seed,
    set_configuration,
    set_required,
    sql,
)

from gangway.record import Outcome

SECRET = "hand-set-token-" + "7f3a9c1e5b"


def _require_stack() -> None:
    if os.environ.get("CI"):
        return  # CI provisions the stack through the session fixture (see drift_stack)
    from rehearsal.stack import moto_ready

    if not moto_ready():
        pytest.fail("the rehearsal stack is not up: run `gangway stack up` (or `make test`)")


@pytest.fixture(scope="module")
def drift_stack(request: pytest.FixtureRequest) -> None:
    """The stack, as every stack test gets it in CI; elsewhere it must already answer."""
    if os.environ.get("CI"):
        request.getfixturevalue("stack")
    _require_stack()


def _world(base: Path) -> World:
    return seed(base, f"sqlite:///{base / 'ledger.sqlite3'}")


@pytest.fixture(scope="module")
def clean_world(drift_stack: None, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A world nobody changed: what the ledger, Terraform and the schema say is what runs."""
    return _world(tmp_path_factory.mktemp("drift-clean"))


@pytest.fixture(scope="module")
def drifted_world(drift_stack: None, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A world changed every way the issue names, by the means people use."""
    world = _world(tmp_path_factory.mktemp("drift-kinds"))
    env = live_env(world, "api")
    env["TZ"] = "UTC"
    set_configuration(world, "api", Environment={"Variables": env})
    env = live_env(world, "telegram")
    env["TELEGRAM_BOT_TOKEN"] = SECRET
    set_configuration(world, "telegram", Environment={"Variables": env})
    set_configuration(world, "query_tool", Timeout=90, MemorySize=1024)
    env = live_env(world, "ticker_fetcher")
    env["DEBUG"] = "1"
    set_configuration(world, "ticker_fetcher", Environment={"Variables": env})
    # A hand deploy: a new version published and the alias moved, outside gangway.
    move_alias(world, "report_worker", publish(world, "report_worker"))
    # A canary split left behind on an alias by something other than a running deploy.
    move_alias(world, "precompute_controller", "1", {publish(world, "precompute_controller"): 0.1})
    # A deploy killed after it moved the alias: its record is still open.
    moved = publish(world, "line_webhook")
    move_alias(world, "line_webhook", moved)
    record_deploy(world, {"line_webhook": moved}, outcome=Outcome.RUNNING)
    # The ledger's last deploy of api recorded another image than version 1 runs (the function
    # was recreated, its versions numbered again).
    record_deploy(world, {"api": "1"}, digest="sha256:" + "0" * 64)
    sql(world, "ALTER TABLE precomputed_reports ADD COLUMN hand_note VARCHAR(20) NULL")
    sql(world, "ALTER TABLE precomputed_reports MODIFY pdf_s3_key VARCHAR(512) NOT NULL")
    sql(world, "ALTER TABLE precomputed_reports MODIFY report_json TEXT NOT NULL")
    sql(world, "UPDATE alembic_version SET version_num = '0001'")
    # The code now requires a setting nobody declared.
    set_required(world, "api", "NEW_FLAG")
    return world


EXPECTED = {
    ("api", "required env not declared", "code"),
    ("api", "env value", "terraform"),
    ("api", "image digest", "pipeline"),
    ("telegram", "env value", "terraform"),
    ("ticker_fetcher", "undeclared env", "terraform"),
    ("query_tool", "timeout", "terraform"),
    ("query_tool", "memory", "terraform"),
    ("report_worker", "alias not from the ledger", "pipeline"),
    ("precompute_controller", "routing weights left", "pipeline"),
    ("line_webhook", "stranded deploy", "pipeline"),
    ("precomputed_reports.pdf_s3_key", "column nullability", "migrations"),
    ("precomputed_reports.report_json", "column type", "migrations"),
    ("precomputed_reports", "column extra", "migrations"),
    ("alembic_version", "schema revision", "migrations"),
}


def _found(report: dict[str, object]) -> set[tuple[str, str, str]]:
    (env,) = report["environments"]  # type: ignore[misc]
    return {
        (d["function"] or d["subject"].split(" ")[0], d["kind"], d["owner"]) for d in env["drift"]
    }


def test_every_kind_of_drift_is_found_with_its_owner(drifted_world: World) -> None:
    done = drift_cli(drifted_world, "--env", drifted_world.env, "--json")
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert _found(report) == EXPECTED  # every injected drift, and nothing else
    (env,) = report["environments"]
    assert env["status"] == "drift" and env["error"] is None
    by_kind = {(d["function"], d["kind"]): d for d in env["drift"]}
    # Non-secret values are shown; a secret is compared by keyed hash and never printed.
    assert "'UTC'" in by_kind[("api", "env value")]["found"]
    assert "keyed hash" in by_kind[("telegram", "env value")]["found"]
    assert SECRET not in done.stdout and SECRET not in done.stderr
    assert "rollback" in by_kind[("report_worker", "alias not from the ledger")]["remedy"]
    # The image is the pipeline's: Terraform's column never carries it.
    assert all(d["owner"] == "pipeline" for d in env["drift"] if d["kind"] == "image digest")
    text = drift_cli(drifted_world, "--env", drifted_world.env)
    assert text.returncode == 1 and "stranded deploy" in text.stdout
    assert SECRET not in text.stdout


def test_the_ignore_file_accepts_a_difference_with_its_reason(drifted_world: World) -> None:
    path = drifted_world.root / "drift-ignore.toml"
    path.write_text(
        '[[ignore]]\nkind = "undeclared env"\nfunction = "ticker_fetcher"\nkeys = ["DEBUG"]\n'
        'reason = "tracing switch the on-call runbook sets"\n'
    )
    try:
        done = drift_cli(drifted_world, "--env", drifted_world.env, "--json")
    finally:
        path.unlink()
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert _found(report) == EXPECTED - {("ticker_fetcher", "undeclared env", "terraform")}
    (ignored,) = report["environments"][0]["ignored"]
    assert ignored["ignored"] == "tracing switch the on-call runbook sets"


def test_a_clean_environment_is_exit_0(clean_world: World) -> None:
    done = drift_cli(clean_world, "--env", clean_world.env, "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (env,) = json.loads(done.stdout)["environments"]
    assert env["status"] == "clean" and env["drift"] == [] and env["checks"] > 50


def test_a_throttling_burst_still_gives_the_right_report(clean_world: World) -> None:
    from rehearsal.fault_proxy import FaultProxy

    with FaultProxy(upstream=clean_world.config().environment.aws.endpoint_url or "") as proxy:
        # A burst on the listing, then on the concurrent alias and version reads.
        proxy.throttle(4, "lambda:ListFunctions")
        proxy.throttle(10, ["lambda:GetAlias", "lambda:GetFunction"])
        done = drift_cli(
            clean_world,
            "--env",
            clean_world.env,
            "--json",
            GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL=proxy.url,
        )
        throttled = sum(proxy.counts("throttled").values())
    assert throttled == 14  # the burst happened, and was ridden out
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (env,) = json.loads(done.stdout)["environments"]
    assert env["status"] == "clean" and env["drift"] == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_endpoint_that_does_not_answer_is_exit_3(clean_world: World) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    done = drift_cli(
        clean_world, "--env", clean_world.env, "--json", GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL=url
    )
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    (env,) = json.loads(done.stdout)["environments"]
    assert env["status"] == "unchecked" and env["drift"] == []
    assert env["boundary"] == "aws" and url in env["error"]
    assert "Traceback" not in done.stderr


def test_an_unknown_environment_is_exit_2(clean_world: World) -> None:
    done = drift_cli(clean_world, "--env", "nosuch")
    assert done.returncode == 2
    assert "nosuch" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def two_env_world(clean_world: World) -> Iterator[World]:
    """clean_world plus an environment whose endpoint does not answer."""
    root = clean_world.root
    down = "zdown"
    text = (root / "deployments" / f"{clean_world.env}.toml").read_text()
    text = text.replace(f'name = "{clean_world.env}"', f'name = "{down}"').replace(
        "http://127.0.0.1:4566", f"http://127.0.0.1:{_closed_port()}"
    )
    files = [
        root / "deployments" / f"{down}.toml",
        root / "terraform" / "environments" / f"{down}.tfvars",
    ]
    files[0].write_text(text)
    files[1].write_text(
        (root / "terraform" / "environments" / f"{clean_world.env}.tfvars").read_text()
    )
    try:
        yield clean_world
    finally:
        for path in files:
            path.unlink()


def test_env_all_reports_the_most_severe(two_env_world: World) -> None:
    done = drift_cli(
        two_env_world,
        "--env",
        "all",
        "--json",
        **{
            "GANGWAY_ZDOWN_DB_PASSWORD": "x",
            "GANGWAY_ZDOWN_TELEGRAM_TOKEN": "x",
            "GANGWAY_ZDOWN_LINE_SECRET": "x",
        },
    )
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    statuses = {e["env"]: e["status"] for e in json.loads(done.stdout)["environments"]}
    assert statuses == {two_env_world.env: "clean", "zdown": "unchecked"}


def test_the_environments_own_aws_identity_is_used(clean_world: World) -> None:
    done = drift_cli(
        clean_world,
        "--env",
        clean_world.env,
        "--json",
        GANGWAY_ENVIRONMENT__AWS__PROFILE="drift-no-such-profile",
    )
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    (env,) = json.loads(done.stdout)["environments"]
    assert env["boundary"] == "aws" and "drift-no-such-profile" in env["error"]


@pytest.fixture(scope="module")
def plain_world(drift_stack: None, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The other shape: one function, no database, no bucket, no terraform/ (its TOML
    declares timeout, memory and env), seeded as `gangway stack seed` does."""
    import secrets

    from service_repo import SERVICE, make_service

    from gangway.config import apply_env_file, load_config
    from rehearsal.aws_seed import seed_environment
    from rehearsal.stack import push_bootstrap

    base = tmp_path_factory.mktemp("drift-plain")
    name = f"drift-echo-{secrets.token_hex(3)}"
    root = make_service(base / "svc")
    for path in (root / "deployments").glob("*.toml"):
        path.write_text(path.read_text().replace(SERVICE, name))
    apply_env_file()
    config = load_config("dev", project=root)
    uri, digest, _ = push_bootstrap(config.environment.registry, name)
    seed_environment(config, uri)
    world = World(
        root=root,
        env="dev",
        service=name,
        ledger_url=f"sqlite:///{base / 'ledger.sqlite3'}",
        image=f"{uri.rsplit(':', 1)[0]}@{digest}",
        digest=digest,
    )
    record_deploy(world, {key: "1" for key in config.functions})
    return world


def test_a_service_without_terraform_or_database_is_checked_too(plain_world: World) -> None:
    clean = drift_cli(plain_world, "--env", "dev", "--json")
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    (key,) = plain_world.config().functions
    set_configuration(plain_world, key, Timeout=20)
    done = drift_cli(plain_world, "--env", "dev", "--json")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (env,) = json.loads(done.stdout)["environments"]
    # Without terraform/, the declared source is gangway's configuration, and so is the owner.
    assert [(d["kind"], d["owner"]) for d in env["drift"]] == [("timeout", "configuration")]
    assert "deployments/dev.toml" in env["drift"][0]["remedy"]
