"""The `gangway` command line as a user runs it: each command in its own process, real stack.

Every test runs the CLI as a subprocess from the repository root with the caller's
environment (tests/conftest.py has applied .gangway/stack.env), so what is asserted is what a
user sees: the exit code, the printed summary or JSON, and the world read back afterwards.
Deploys go to ``staging`` (``make demo`` deploys to dev, as the README says); one successful
deploy is shared by the ledger tests to keep the module's time down.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alias_reads import settle

from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.record import DeployRecord, Outcome
from rehearsal.stack import GOOD_STATES
from tasks import lambda_read, schema
from tasks.ledger import Ledger

pytestmark = pytest.mark.stack

ENV = "staging"
COMPONENTS = (
    "packages",
    "dockerd",
    "mariadb",
    "registry",
    "registry-auth",
    "base-image",
    "databases",
    "package-index",
    "moto",
    "aws-seed",
    "prefect",
    "prefect-worker",
)
# `up` starts the authenticating registry once the databases step wrote its password, and
# also reports the wheels it filled the package index with, and the steps that make the
# worker useful: its pool and the deployments.
UP_COMPONENTS = (
    "packages",
    "dockerd",
    "mariadb",
    "registry",
    "base-image",
    "databases",
    "registry-auth",
    "package-index",
    "wheels",
    "moto",
    "aws-seed",
    "prefect",
    "work-pool",
    "deployments",
    "prefect-worker",
)
DAEMONS = (
    "dockerd",
    "mariadb",
    "registry",
    "registry-auth",
    "package-index",
    "moto",
    "prefect",
    "prefect-worker",
)
TRACEBACK = "Traceback (most recent call last)"
SCRATCH = "gw_cli_scratch"
HEADLINE = re.compile(r"^deploy ([0-9a-f]{32})  (\S+)  ([A-Z-]+)$", re.M)


@dataclass(frozen=True)
class Run:
    """One finished CLI process as the user saw it."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        """stdout and stderr together."""
        return self.out + self.err

    def explain(self) -> str:
        """What to print when an assertion about this run fails."""
        return (
            f"$ {' '.join(self.args)} -> exit {self.code} in {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.out[-4000:]}\n--- stderr ---\n{self.err[-4000:]}"
        )

    def headline(self) -> tuple[str, str, str]:
        """(deploy id, env, OUTCOME) from the record summary's first line."""
        match = HEADLINE.search(self.out)
        assert match, f"no record summary in the output\n{self.explain()}"
        return match.group(1), match.group(2), match.group(3)


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, command: str = "cli"
) -> Run:
    """Run ``gangway <args>`` (or another command) in its own process from the repo root."""
    argv = [sys.executable, "-m", "cli", *args] if command == "cli" else list(args)
    started = time.monotonic()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
    )
    result = Run(tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    assert TRACEBACK not in result.text, f"a bare traceback reached the user\n{result.explain()}"
    return result


def parse_table(text: str) -> dict[str, dict[str, str]]:
    """Rows of a rendered table (header, dashes, rows) keyed by the first column."""
    lines = text.splitlines()
    dash_at = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+( +-+)*", line))
    header, dashes = lines[dash_at - 1], lines[dash_at]
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    # The last column has no dashes: it runs to the end of the line.
    spans.append((spans[-1][1] + 2, 10_000))
    names = [header[a:b].strip() for a, b in spans]
    rows = {}
    for line in lines[dash_at + 1 :]:
        if not line.strip() or line.startswith("total "):
            break
        cells = [line[a:b].strip() for a, b in spans]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def head_sha() -> str:
    """The commit at HEAD of the repository."""
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def append_python(module: str, code: str) -> str:
    """A Dockerfile step appending code to a handler module inside the image."""
    encoded = base64.b64encode(textwrap.dedent(code).encode()).decode()
    return f"RUN echo {encoded} | base64 -d >> ${{LAMBDA_TASK_ROOT}}/app/{module}.py"


def read_aliases(config: DeployConfig) -> dict[str, tuple[str, dict[str, float]]]:
    """Every function's alias target and routing weights, read back from AWS (settled)."""
    settle(config)
    states = {
        key: lambda_read.read_alias(config, fn.name) for key, fn in config.functions.items()
    }
    return {key: (state.version, dict(state.weights)) for key, state in states.items()}


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def config(stack: object) -> DeployConfig:
    """The staging configuration, with the repository's own migrations and Dockerfile."""
    return load_config(ENV)


@pytest.fixture(scope="module")
def deployed(config: DeployConfig) -> Run:
    """`gangway deploy --env staging` of the working tree, run once for the module."""
    return run("deploy", "--env", ENV)


@pytest.fixture(scope="module")
def deployed_record(deployed: Run) -> DeployRecord:
    """The ledger record the shared deploy left."""
    assert deployed.code == 0, deployed.explain()
    deploy_id, _, _ = deployed.headline()
    record = Ledger().get(deploy_id)
    assert record is not None, deployed.explain()
    return record


@pytest.fixture(scope="module")
def validated(config: DeployConfig) -> Run:
    """`gangway deploy --env staging --sha HEAD --json`: a clean, promotable deploy of HEAD."""
    return run("deploy", "--env", ENV, "--sha", head_sha(), "--json")


@pytest.fixture
def destructive_migrations(tmp_path: Path, config: DeployConfig) -> Iterator[Path]:
    """A migrations copy whose revision 0003 creates a scratch table and drops its column.

    The drop touches only what the revision itself created. Afterwards the scratch table is
    dropped and alembic_version put back on the repository's head, so later deploys of the
    committed migrations still find a revision they know.
    """
    copy = tmp_path / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", copy)
    (copy / "versions" / "0003_cli_scratch.py").write_text(
        textwrap.dedent(
            f"""\
            \"\"\"A scratch table, then its column dropped (destructive).\"\"\"
            import sqlalchemy as sa
            from alembic import op

            revision = "0003"
            down_revision = "0002"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                op.create_table(
                    "{SCRATCH}",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("doomed", sa.String(8)),
                )
                op.drop_column("{SCRATCH}", "doomed")


            def downgrade() -> None:
                op.drop_table("{SCRATCH}")
            """
        )
    )
    head = schema.head_revision(config)
    yield copy
    engine = schema.engine(config)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {SCRATCH}"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    finally:
        engine.dispose()
    assert schema.current_revision(config) == head
    assert not schema.columns(config, SCRATCH)


# ---------------------------------------------------------------------------------- stack
def test_stack_status_lists_every_component(stack: object) -> None:
    status = run("stack", "status")
    assert status.code == 0, status.explain()
    rows = parse_table(status.out)
    assert tuple(rows) == COMPONENTS, status.explain()
    for name, row in rows.items():
        assert row["state"] in GOOD_STATES, f"{name}: {row['state']}\n{status.explain()}"


def test_second_stack_up_is_idempotent(stack: object) -> None:
    # The session's `stack` fixture already ran up(); this is the second one.
    before = parse_table(run("stack", "status").out)
    again = run("stack", "up")
    assert again.code == 0, again.explain()
    assert again.seconds < 20, f"a second `stack up` should only check\n{again.explain()}"
    rows = parse_table(again.out)
    assert tuple(rows) == UP_COMPONENTS, again.explain()
    assert rows["deployments"]["detail"].startswith("current:"), again.explain()
    assert rows["packages"]["state"] == "ok"
    for daemon in DAEMONS:
        assert rows[daemon]["state"] in ("running", "external"), again.explain()
        assert rows[daemon]["pid"] == before[daemon]["pid"], f"{daemon} was restarted"
    assert rows["base-image"]["state"] == "reused", again.explain()
    assert rows["aws-seed"]["detail"].startswith("already seeded on this bridge"), again.explain()
    assert "started" not in {r["state"] for r in rows.values()}
    after = parse_table(run("stack", "status").out)
    assert {d: after[d]["pid"] for d in DAEMONS} == {d: before[d]["pid"] for d in DAEMONS}


# --------------------------------------------------------------------------- demo, gate
def test_demo_runs_to_its_summary(config: DeployConfig) -> None:
    demo = run("demo", "--env", ENV)
    assert demo.code == 0, demo.explain()
    assert demo.out.startswith("== rehearsal stack"), demo.explain()
    assert f"== deploy the reference service to {ENV}, end to end" in demo.out
    _, env, outcome = demo.headline()
    assert (env, outcome) == (ENV, "SUCCEEDED"), demo.explain()
    assert re.search(r"^demo finished in \d+\.\d+s$", demo.out, re.M), demo.explain()


def test_make_demo_as_the_readme_writes_it(stack: object) -> None:
    demo = run("make", "demo", command="make")
    assert demo.code == 0, demo.explain()
    _, env, outcome = demo.headline()
    assert (env, outcome) == ("dev", "SUCCEEDED"), demo.explain()
    assert "demo finished in" in demo.out, demo.explain()


def test_gate_json_checks_every_function(config: DeployConfig) -> None:
    gate = run("gate", "--env", ENV, "--json")
    assert gate.code == 0, gate.explain()
    body = json.loads(gate.out)
    assert body["env"] == ENV
    assert body["digest"] is None, "no push without --push"
    assert body["commit_sha"] == head_sha()
    checks = body["gate"]["checks"]
    assert checks and all(c["ok"] for c in checks), gate.explain()
    names = {c["name"] for c in checks}
    for key, fn in config.functions.items():
        assert f"import {key} ({fn.spec.handler})" in names, f"no check for {key}: {names}"


def test_gate_of_a_dockerfile_outside_the_repository_is_dirty(
    config: DeployConfig, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text((REPO_ROOT / "service" / "Dockerfile").read_text())
    gate = run(
        "gate",
        "--env",
        ENV,
        "--json",
        env={"GANGWAY_SERVICE__BUILD__DOCKERFILE": str(dockerfile)},
    )
    assert gate.code == 0, gate.explain()
    body = json.loads(gate.out)
    # Not part of any commit: never tagged as the clean SHA.
    assert body["dirty"] is True and "dirty" in body["image"], gate.explain()


def test_gate_with_bad_configuration_exits_2_before_a_flow_run(stack: object) -> None:
    gate = run("gate", "--env", ENV, env={"GANGWAY_FUNCTIONS__API__TIMEOUT": "true"})
    assert gate.code == 2, gate.explain()
    assert "[config]" in gate.err and "functions.api.timeout" in gate.err, gate.explain()
    assert "| ERROR" not in gate.text and "Beginning flow run" not in gate.text, gate.explain()


# -------------------------------------------------------------------------------- deploy
def test_deploy_succeeds(deployed: Run, deployed_record: DeployRecord) -> None:
    _, env, outcome = deployed.headline()
    assert (env, outcome) == (ENV, "SUCCEEDED"), deployed.explain()
    assert deployed_record.outcome is Outcome.SUCCEEDED
    for move in deployed_record.functions.values():
        assert move.version_after and move.version_after in deployed.out


def test_deploy_json_on_a_real_run(validated: Run, config: DeployConfig) -> None:
    assert validated.code == 0, validated.explain()
    body = json.loads(validated.out)
    assert body["outcome"] == "succeeded", validated.explain()
    assert body["env"] == ENV
    assert body["commit_sha"] == head_sha() and not body["dirty"]
    assert body["image_digest"].startswith("sha256:")
    assert set(body["functions"]) == set(config.functions)
    aliases = read_aliases(config)
    for key, move in body["functions"].items():
        assert move["version_after"], f"{key} has no version"
        assert aliases[key] == (move["version_after"], {}), f"{key}: alias {aliases[key]}"


def test_promote_deploys_the_validated_digest(validated: Run, config: DeployConfig) -> None:
    assert validated.code == 0, validated.explain()
    source = json.loads(validated.out)
    # Promotion is its own command (flows/promote.py); the deploy has no --promote flag.
    promoted = run(
        "promote", "--sha", source["commit_sha"], "--from", ENV, "--to", "prod",
        "--reason", "cli test",
        # Approval and soak are prod's; this test is about the command, not them.
        env={"GANGWAY_ENVIRONMENT__PROMOTION__APPROVAL": "false",
             "GANGWAY_ENVIRONMENT__PROMOTION__SOAK_S": "0"},
    )
    assert promoted.code == 0, promoted.explain()
    deploy_id, env, outcome = promoted.headline()
    assert (env, outcome) == ("prod", "SUCCEEDED"), promoted.explain()
    assert f"note: promoted the image validated by deploy {source['deploy_id']}" in promoted.out
    record = Ledger().get(deploy_id)
    assert record is not None and record.kind == "promote"
    assert record.image_digest == source["image_digest"]
    steps = {s.name for s in record.steps}
    assert "pull" in steps and "build" not in steps, steps
    aliases = read_aliases(load_config("prod"))
    for key, move in record.functions.items():
        assert aliases[key] == (move.version_after, {})


def test_rolled_back_run_exits_1(
    tmp_path: Path, config: DeployConfig, deployed_record: DeployRecord
) -> None:
    # Imports fine (the in-image gate passes), raises on every invoke: smoke catches it
    # after the alias moved.
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        (REPO_ROOT / "service" / "Dockerfile").read_text()
        + "\n"
        + append_python(
            "ticker_fetcher",
            """
            def handler(event, context):
                raise RuntimeError("ticker fetcher broken at invoke (test_cli variant)")
            """,
        )
        + "\n"
    )
    before = read_aliases(config)
    failed = run(
        "deploy", "--env", ENV, env={"GANGWAY_SERVICE__BUILD__DOCKERFILE": str(dockerfile)}
    )
    assert failed.code == 1, failed.explain()
    deploy_id, env, outcome = failed.headline()
    assert (env, outcome) == (ENV, "ROLLED-BACK"), failed.explain()
    assert "rolled-back at smoke; rollback verified" in failed.out, failed.explain()
    assert "ticker fetcher broken at invoke" in failed.text, failed.explain()
    assert read_aliases(config) == before
    record = Ledger().get(deploy_id)
    assert record is not None and record.outcome is Outcome.ROLLED_BACK
    for key, move in record.functions.items():
        if move.alias_moved:
            assert move.restore_verified and move.restored_to == before[key][0]


def test_allow_destructive(
    config: DeployConfig, deployed_record: DeployRecord, destructive_migrations: Path
) -> None:
    use_copy = {"GANGWAY_SERVICE__MIGRATIONS": str(destructive_migrations)}
    head = schema.head_revision(config)
    blocked = run("deploy", "--env", ENV, env=use_copy)
    assert blocked.code == 1, blocked.explain()
    assert blocked.headline()[2] == "BLOCKED", blocked.explain()
    assert "blocked at migration lint" in blocked.out, blocked.explain()
    assert f"drops a column of {SCRATCH}" in blocked.out, blocked.explain()
    assert schema.current_revision(config) == head
    assert not schema.columns(config, SCRATCH)

    allowed = run("deploy", "--env", ENV, "--allow-destructive", env=use_copy)
    assert allowed.code == 0, allowed.explain()
    assert allowed.headline()[2] == "SUCCEEDED", allowed.explain()
    assert "(allowed by allow_destructive)" in Ledger().get(allowed.headline()[0]).model_dump_json()
    assert schema.current_revision(config) == "0003"
    assert set(schema.columns(config, SCRATCH)) == {"id"}


# -------------------------------------------------------------------------------- ledger
def test_ledger_list(deployed_record: DeployRecord) -> None:
    listed = run("ledger", "list", "--env", ENV)
    assert listed.code == 0, listed.explain()
    row = parse_table(listed.out).get(deployed_record.deploy_id[:12])
    assert row is not None, listed.explain()
    assert (row["env"], row["outcome"]) == (ENV, "succeeded")


def test_ledger_show_short_id_from_list(deployed_record: DeployRecord) -> None:
    listed = run("ledger", "list", "--env", ENV)
    short = next(k for k in parse_table(listed.out) if deployed_record.deploy_id.startswith(k))
    assert len(short) == 12
    shown = run("ledger", "show", short)
    assert shown.code == 0, shown.explain()
    assert shown.headline() == (deployed_record.deploy_id, ENV, "SUCCEEDED")


def test_ledger_show_full_id_json(deployed_record: DeployRecord) -> None:
    shown = run("ledger", "show", deployed_record.deploy_id, "--json")
    assert shown.code == 0, shown.explain()
    assert DeployRecord.model_validate_json(shown.out) == deployed_record


def test_ledger_sha(deployed_record: DeployRecord) -> None:
    found = run("ledger", "sha", deployed_record.commit_sha)
    assert found.code == 0, found.explain()
    assert deployed_record.deploy_id[:12] in parse_table(found.out), found.explain()


def test_ledger_digest(deployed_record: DeployRecord) -> None:
    assert deployed_record.image_digest
    found = run("ledger", "digest", deployed_record.image_digest)
    assert found.code == 0, found.explain()
    assert deployed_record.deploy_id[:12] in parse_table(found.out), found.explain()


def test_ledger_show_prefix_ambiguous_or_unknown(tmp_path: Path) -> None:
    # A ledger of its own: two records whose ids share their first 12 characters.
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    ids = ["abcdef012345" + "0" * 20, "abcdef012345" + "1" * 20]
    for deploy_id in ids:
        ledger.write(DeployRecord(deploy_id=deploy_id, env=ENV, commit_sha="f" * 40))
    ledger.engine.dispose()
    use = {"GANGWAY_LEDGER_URL": url}

    ambiguous = run("ledger", "show", "abcdef012345", env=use)
    assert ambiguous.code == 2, ambiguous.explain()
    assert "ambiguous" in ambiguous.err and all(i in ambiguous.err for i in ids)

    unique = run("ledger", "show", ids[1][:13], env=use)
    assert unique.code == 0, unique.explain()
    assert unique.headline()[0] == ids[1]

    for unknown in ("abcdef01_", "abcdef01%", "0123456789ab"):
        missing = run("ledger", "show", unknown, env=use)
        assert missing.code == 2, missing.explain()
        assert f"no deploy {unknown!r} in the ledger" in missing.err, missing.explain()


def test_ledger_show_into_a_closed_pipe(deployed_record: DeployRecord) -> None:
    # `gangway ledger show ID | head -1`: the reader leaves before the record is printed.
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "ledger", "show", deployed_record.deploy_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    code = process.wait(timeout=60)
    assert code == 141, err
    assert err == "", "a closed pipe is not a gangway bug and must not be reported as one"


def test_ledger_events_lists_the_facts_the_record_is_folded_from(
    deployed_record: DeployRecord,
) -> None:
    shown = run("ledger", "events", deployed_record.deploy_id[:12])
    assert shown.code == 0, shown.explain()
    kinds = [line.split()[1] for line in shown.out.splitlines()[2:]]
    assert kinds[0] == "started" and kinds[-1] == "finished", shown.out
    assert kinds.count("step") == len(deployed_record.steps)
    assert kinds.count("gate") == len(deployed_record.gates)
    assert "moving" in kinds and "outcome=succeeded" in shown.out
