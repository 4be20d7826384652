"""A world for the drift tests: a copy of the reference service (terraform/ included) under a
name of its own, seeded on the rehearsal stack, migrated to head, with a ledger that records
where its aliases are (what a deploy would have written), and the means to change that world
the way people do (the console, a hand deploy, a killed deploy, an ALTER TABLE).

Everything it creates is named ``drift-<tag>`` (functions, repository, bucket) or
``drift_<tag>`` (the database), in an environment ``d<tag>``, so that it never touches what
other tests or the shared stack's environments use.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gangway.config import REPO_ROOT, DeployConfig, apply_env_file, load_config
from gangway.record import DeployRecord, FunctionMove, Outcome
from rehearsal import fidelity
from tasks import schema
from tasks.aws import client
from tasks.ledger import Ledger


@dataclass
class World:
    """One seeded environment of a drift-<tag> copy of the reference service."""

    root: Path
    env: str
    service: str
    ledger_url: str
    image: str  # repository@digest the seeded versions run
    digest: str

    def config(self) -> DeployConfig:
        """The environment's configuration, read now."""
        return load_config(self.env, project=self.root)

    def lam(self) -> Any:
        """The Lambda client of the environment."""
        return client(self.config(), "lambda")

    def cli_env(self, **extra: str) -> dict[str, str]:
        """The environment of a `gangway` process acting on this world."""
        return {**os.environ, "GANGWAY_LEDGER_URL": self.ledger_url, **extra}


def _sub(text: str, pairs: dict[str, str]) -> str:
    for old, new in pairs.items():
        text = text.replace(old, new)
    return text


def make_project(base: Path, tag: str) -> tuple[Path, str, str]:
    """The reference service's deployments/, terraform/ and migrations/ renamed for tag."""
    env, service, db = f"d{tag}", f"drift-{tag}", f"drift_{tag}"
    root = base / service
    (root / "deployments").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "migrations", root / "migrations")
    shutil.copytree(
        REPO_ROOT / "terraform", root / "terraform", ignore=shutil.ignore_patterns("*.tfvars")
    )
    service_toml = (REPO_ROOT / "deployments" / "service.toml").read_text()
    (root / "deployments" / "service.toml").write_text(
        _sub(
            service_toml,
            {
                'name = "daily-report"': f'name = "{service}"',
                'repository = "daily-report"': f'repository = "{service}"',
            },
        )
    )
    dev = (REPO_ROOT / "deployments" / "dev.toml").read_text()
    (root / "deployments" / f"{env}.toml").write_text(
        _sub(
            dev,
            {
                'name = "dev"': f'name = "{env}"',
                "daily-report-dev-reports": f"{service}-reports",
                "daily_report_dev": db,
                "GANGWAY_DEV_DB_PASSWORD": f"GANGWAY_{env.upper()}_DB_PASSWORD",
            },
        )
    )
    tfvars = (REPO_ROOT / "terraform" / "environments" / "dev.tfvars").read_text()
    (root / "terraform" / "environments").mkdir(exist_ok=True)
    (root / "terraform" / "environments" / f"{env}.tfvars").write_text(
        _sub(
            tfvars,
            {
                '"dev"': f'"{env}"',
                "daily_report_dev": db,
                "daily-report-dev-reports": f"{service}-reports",
            },
        )
        + f'service       = "{service}"\n'
    )
    return root, env, service


def seed(base: Path, ledger_url: str) -> World:
    """Make, seed and migrate a new world; its ledger says gangway put every alias where it is."""
    from rehearsal import mariadb_setup
    from rehearsal.aws_seed import seed_environment
    from rehearsal.stack import push_bootstrap

    tag = secrets.token_hex(3)
    root, env, service = make_project(base, tag)
    mariadb_setup.ensure_databases([env], directory=root / "deployments")
    apply_env_file()
    config = load_config(env, project=root)
    uri, digest, _ = push_bootstrap(config.environment.registry, config.service.build.repository)
    seed_environment(config, uri)
    schema.upgrade(config)
    repository = uri.rsplit(":", 1)[0]
    world = World(
        root=root,
        env=env,
        service=service,
        ledger_url=ledger_url,
        image=f"{repository}@{digest}",
        digest=digest,
    )
    record_deploy(world, {key: "1" for key in config.functions})
    return world


def record_deploy(
    world: World,
    versions: dict[str, str],
    digest: str | None = None,
    outcome: Outcome = Outcome.SUCCEEDED,
    moved: bool = True,
) -> DeployRecord:
    """A ledger record as a deploy writes it: each function's alias left on versions[key]."""
    config = world.config()
    image = world.image if digest is None else f"{world.image.split('@')[0]}@{digest}"
    record = DeployRecord(
        kind="deploy",
        service=world.service,
        env=world.env,
        commit_sha=secrets.token_hex(20),
        image_ref=image,
        image_digest=digest or world.digest,
        outcome=outcome,
        functions={
            key: FunctionMove(
                name=config.functions[key].name,
                version_before="1",
                version_after=version,
                image_after=image,
                alias_moved=moved,
            )
            for key, version in versions.items()
        },
        finished_at=None if outcome is Outcome.RUNNING else datetime.now(UTC),
    )
    ledger = Ledger(world.ledger_url)
    try:
        return ledger.write(record)
    finally:
        ledger.engine.dispose()


def drift_cli(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`gangway drift --project <world> --env <env> ...` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "drift", "--project", str(world.root), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=world.cli_env(**env),
    )


def wait_updated(lam: Any, name: str) -> None:
    """Until the function's last update settled (the bridge imitates Lambda's InProgress)."""
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )


def set_configuration(world: World, key: str, **changes: Any) -> None:
    """An UpdateFunctionConfiguration made outside gangway and Terraform (the console)."""
    lam, name = world.lam(), world.config().functions[key].name
    wait_updated(lam, name)
    lam.update_function_configuration(FunctionName=name, **changes)
    wait_updated(lam, name)


def live_env(world: World, key: str) -> dict[str, str]:
    """The function's env values now (for a test to change one)."""
    conf = world.lam().get_function_configuration(FunctionName=world.config().functions[key].name)
    return dict((conf.get("Environment") or {}).get("Variables") or {})


def publish(world: World, key: str) -> str:
    """A new published version of the function's current code (a hand deploy's publish)."""
    lam, name = world.lam(), world.config().functions[key].name
    wait_updated(lam, name)
    # A changed description makes $LATEST differ from the last version, so it publishes anew.
    lam.update_function_configuration(FunctionName=name, Description=f"hand {secrets.token_hex(3)}")
    wait_updated(lam, name)
    return str(lam.publish_version(FunctionName=name)["Version"])


def move_alias(
    world: World, key: str, version: str, weights: dict[str, float] | None = None
) -> None:
    """UpdateAlias outside gangway (a hand deploy, or a canary split left behind)."""
    config = world.config()
    routing = {"AdditionalVersionWeights": weights or {}}
    name = config.functions[key].name
    world.lam().update_alias(
        FunctionName=name,
        Name=config.environment.alias,
        FunctionVersion=version,
        RoutingConfig=routing,
    )
    # GetAlias is eventually consistent (rehearsal.fidelity): judge it once the lag is over.
    time.sleep(fidelity.for_function(name).stale_alias_s)


def sql(world: World, statement: str) -> None:
    """One DDL statement on the world's database (a hand-made schema change)."""
    import sqlalchemy as sa

    engine = schema.engine(world.config())
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def set_required(world: World, key: str, extra: str) -> str:
    """functions.<key>.required_env plus extra in service.toml; returns the old text."""
    path = world.root / "deployments" / "service.toml"
    old = path.read_text()
    pattern = re.compile(rf"(\[functions\.{key}\][^\[]*?required_env = \[)", re.S)
    path.write_text(pattern.sub(rf'\1"{extra}", ', old, count=1))
    return old
