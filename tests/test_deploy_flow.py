"""The deploy flow end to end on the rehearsal stack: order, gates, rollback, ledger.

Each failure case deploys a variant of the reference image (the committed Dockerfile plus
one sabotage step, selected with the GANGWAY_SERVICE__BUILD__DOCKERFILE override) or
changes the real world (a function's configuration, a migration), then asserts where the
flow stopped, that the alias is where it must be (read back from AWS), and the ledger.
"""

from __future__ import annotations

import base64
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.deploy import DeployFailed, deploy
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.plan import DeployPlan
from tasks import lambda_deploy, schema
from tasks.aws import client
from tasks.env_lock import deploy_lock
from tasks.ledger import DeployRecord, Ledger, Outcome

pytestmark = pytest.mark.stack
ENV = "dev"


def aliases(config: DeployConfig) -> dict[str, str]:
    """Where each function's alias points now, read from AWS."""
    return {
        key: lambda_deploy.read_alias(config, fn.name).version
        for key, fn in config.functions.items()
    }


def weights(config: DeployConfig) -> dict[str, dict[str, float]]:
    return {
        key: lambda_deploy.read_alias(config, fn.name).weights
        for key, fn in config.functions.items()
    }


def failed_deploy(**kwargs: object) -> DeployRecord:
    with pytest.raises(DeployFailed) as err:
        deploy(env=ENV, **kwargs)
    record = err.value.record
    stored = Ledger().get(record.deploy_id)
    assert stored is not None and stored.outcome == record.outcome, "the attempt is not recorded"
    return record


def assert_no_secrets(config: DeployConfig, record: DeployRecord) -> None:
    text = record.model_dump_json()
    for secret in config.secret_values():
        assert secret not in text


@pytest.fixture(scope="module")
def baseline(stack: object) -> DeployRecord:
    """A first successful deploy, so every later test starts from a healthy alias."""
    schema.upgrade(load_config(ENV))
    record = deploy(env=ENV)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    return record


@pytest.fixture
def config(baseline: DeployRecord) -> DeployConfig:
    return load_config(ENV)


@pytest.fixture
def variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Build the next deploy from the committed Dockerfile plus extra steps."""

    def use(*steps: str) -> None:
        original = (REPO_ROOT / "service" / "Dockerfile").read_text()
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(original + "\n" + "\n".join(steps) + "\n")
        monkeypatch.setenv("GANGWAY_SERVICE__BUILD__DOCKERFILE", str(dockerfile))

    yield use


def append_python(module: str, code: str) -> str:
    """A Dockerfile step appending code to a handler module inside the image."""
    encoded = base64.b64encode(textwrap.dedent(code).encode()).decode()
    return f"RUN echo {encoded} | base64 -d >> ${{LAMBDA_TASK_ROOT}}/app/{module}.py"


# ---------------------------------------------------------------------------- happy path
def test_happy_path_records_the_whole_artifact_chain(
    baseline: DeployRecord, config: DeployConfig
) -> None:
    record = deploy(env=ENV)
    assert isinstance(record, DeployRecord)
    assert record.outcome is Outcome.SUCCEEDED
    assert record.image_digest and record.image_digest.startswith("sha256:")
    assert record.schema_after == schema.head_revision(config)
    lam = client(config, "lambda")
    for key, move in record.functions.items():
        assert aliases(config)[key] == move.version_after
        code = lam.get_function(FunctionName=move.name, Qualifier=move.version_after)["Code"]
        assert code["ImageUri"].endswith("@" + record.image_digest)
    gates = {g.gate: g for g in record.gates}
    strengths = {g.strength.value for g in record.gates}
    assert {"surface", "content", "observability", "ground-truth"} & strengths >= {
        "content",
        "observability",
        "ground-truth",
    }
    assert all(g.status.value == "passed" for g in record.gates), gates
    # The same digest again: the versions are reused, nothing piles up.
    assert all(
        m.version_after == baseline.functions[k].version_after
        or baseline.image_digest != record.image_digest
        for k, m in record.functions.items()
    )
    ledger = Ledger()
    assert record.deploy_id in {r.deploy_id for r in ledger.by_sha(record.commit_sha, ENV)}
    assert record.deploy_id in {r.deploy_id for r in ledger.by_digest(record.image_digest)}
    assert_no_secrets(config, ledger.get(record.deploy_id))


def test_dry_run_prints_the_plan_and_changes_nothing(config: DeployConfig) -> None:
    before, count = aliases(config), len(Ledger().recent(ENV, limit=1000))
    plan = deploy(env=ENV, dry_run=True)
    assert isinstance(plan, DeployPlan)
    assert [s.name for s in plan.steps][:3] == ["build", "in-image gate", "push"]
    assert {f.name for f in plan.functions} == {f.name for f in config.functions.values()}
    assert aliases(config) == before
    assert len(Ledger().recent(ENV, limit=1000)) == count


# ---------------------------------------------------------------- post-traffic triggers
def _rolled_back(record: DeployRecord, config: DeployConfig, before: dict[str, str]) -> None:
    assert record.outcome is Outcome.ROLLED_BACK, record.message
    assert record.rollback and record.rollback["result"] == "verified"
    assert aliases(config) == before
    assert all(not w for w in weights(config).values())
    assert all(m.restore_verified for m in record.functions.values() if m.alias_moved)
    assert_no_secrets(config, record)


def test_smoke_failure_rolls_back(config: DeployConfig, variant) -> None:
    variant(
        append_python(
            "ticker_fetcher",
            """
        def handler(event, context):
            raise RuntimeError("ticker source unreachable (variant)")
    """,
        )
    )
    before = aliases(config)
    record = failed_deploy()
    _rolled_back(record, config, before)
    assert record.trigger["step"] == "smoke"
    assert any("ticker source unreachable" in c["found"] for c in record.trigger["checks"])


def test_200_with_error_in_logs_rolls_back(config: DeployConfig, variant) -> None:
    variant(
        append_python(
            "ticker_fetcher",
            """
        _gangway_original = handler
        def handler(event, context):
            log.error("quote feed degraded, serving stale symbols (variant)")
            return _gangway_original(event, context)
    """,
        )
    )
    before = aliases(config)
    record = failed_deploy()
    _rolled_back(record, config, before)
    assert record.trigger["step"] == "log scan"
    assert any("quote feed degraded" in c["found"] for c in record.trigger["checks"])


def test_no_application_log_lines_rolls_back(config: DeployConfig, variant) -> None:
    variant(
        append_python(
            "query_tool",
            """
        import logging as _gangway_logging
        _gangway_logging.disable(_gangway_logging.CRITICAL)
    """,
        )
    )
    before = aliases(config)
    record = failed_deploy()
    _rolled_back(record, config, before)
    assert record.trigger["step"] == "log scan"
    names = " ".join(c["name"] for c in record.trigger["checks"])
    assert "query-tool" in names or "query_tool" in names


def test_silent_pdf_s3_key_drop_is_caught_by_ground_truth(config: DeployConfig, variant) -> None:
    # The incident: the INSERT omits the column, succeeds, and the value is gone.
    variant("RUN sed -i '/^    \"pdf_s3_key\",$/d' ${LAMBDA_TASK_ROOT}/app/models.py")
    before = aliases(config)
    record = failed_deploy()
    _rolled_back(record, config, before)
    assert record.trigger["step"] == "ground truth"
    assert any("pdf_s3_key" in c["name"] + c["found"] for c in record.trigger["checks"])


CANARY_FAILS_AFTER_FIRST_CALL = """
    import os as _gw_os

    import pymysql as _gw_pymysql

    _gw_original = {attr}

    def {attr}(event, context):
        # Fails every invocation after this function's first (its smoke test): only the
        # bake's traffic sees the errors, as with a canary that degrades under load.
        conn = _gw_pymysql.connect(
            host=_gw_os.environ["DB_HOST"], port=int(_gw_os.environ["DB_PORT"]),
            user=_gw_os.environ["DB_USER"], password=_gw_os.environ["DB_PASSWORD"],
            database=_gw_os.environ["DB_NAME"], autocommit=True,
        )
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS gw_canary_hits (fn VARCHAR(64))")
            cur.execute("INSERT INTO gw_canary_hits VALUES (%s)", ({module!r},))
            cur.execute("SELECT COUNT(*) FROM gw_canary_hits WHERE fn = %s", ({module!r},))
            hits = cur.fetchone()[0]
        if hits > 1:
            raise RuntimeError("canary degraded (variant)")
        return _gw_original(event, context)
"""


def test_canary_error_rate_rolls_back(config: DeployConfig, variant) -> None:
    with schema.engine(config).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS gw_canary_hits"))
    steps = [
        append_python(
            module,
            CANARY_FAILS_AFTER_FIRST_CALL.format(attr=fn.spec.attribute, module=module),
        )
        for module, fn in ((f.spec.module.split(".")[-1], f) for f in config.functions.values())
    ]
    variant(*steps)
    before = aliases(config)
    try:
        record = failed_deploy(canary_percent=50, bake_s=6)
    finally:
        with schema.engine(config).begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS gw_canary_hits"))
    _rolled_back(record, config, before)
    assert record.trigger["step"] == "bake"
    [check] = record.trigger["checks"]
    assert check["name"] == "canary error rate"
    assert record.traffic == {"mode": "canary", "canary_percent": 50, "bake_s": 6}


# ------------------------------------------------------------------ pre-traffic gates
def _blocked(record: DeployRecord, config: DeployConfig, before: dict[str, str]) -> None:
    assert record.outcome is Outcome.BLOCKED, record.message
    assert record.rollback is None
    assert not any(m.alias_moved for m in record.functions.values())
    assert aliases(config) == before
    assert_no_secrets(config, record)


def test_handler_missing_from_image_blocks(config: DeployConfig, variant) -> None:
    variant("RUN rm ${LAMBDA_TASK_ROOT}/app/line_webhook.py")
    before = aliases(config)
    record = failed_deploy()
    _blocked(record, config, before)
    assert record.trigger["step"] == "in-image gate"
    assert "[process]" in record.trigger["error"]
    assert "app.line_webhook" in record.trigger["error"]
    assert record.image_digest is None, "a failed image must not be pushed"


def test_handler_attribute_missing_blocks(config: DeployConfig, variant) -> None:
    variant(
        "RUN sed -i 's/def handle_webhook(/def handle_webhook_v2(/' "
        "${LAMBDA_TASK_ROOT}/app/line_webhook.py"
    )
    before = aliases(config)
    record = failed_deploy()
    _blocked(record, config, before)
    assert "handle_webhook is missing in the image" in record.trigger["error"]


@pytest.fixture
def migrations_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", target)
    monkeypatch.setenv("GANGWAY_SERVICE__MIGRATIONS", str(target))
    return target


def add_revision_0003(migrations: Path, doc: str, *upgrade: str) -> None:
    """Write revision 0003 (after 0002) whose upgrade runs the given alembic operations."""
    body = "\n".join(f"    {line}" for line in upgrade)
    (migrations / "versions" / "0003_test.py").write_text(
        f'"""{doc}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        'revision = "0003"\ndown_revision = "0002"\nbranch_labels = None\ndepends_on = None\n\n'
        f"def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
    )


def test_missing_column_blocks_and_names_it(config: DeployConfig, migrations_copy: Path) -> None:
    # The database is at 0001 and no revision adds pdf_s3_key: the code must not ship.
    (migrations_copy / "versions" / "0002_add_pdf_s3_key.py").unlink()
    with schema.engine(config).begin() as conn:
        from alembic import command

        command.downgrade(schema.alembic_config(config, conn), "0001")
    before = aliases(config)
    try:
        record = failed_deploy()
    finally:
        schema.upgrade(config)
    _blocked(record, config, before)
    assert record.trigger["step"] == "verify columns"
    [missing] = [c for c in record.trigger["checks"] if "pdf_s3_key" in c["name"]]
    assert missing["found"] == "column does not exist"
    assert "write a migration" in missing["remedy"]


def test_destructive_migration_blocks_before_running(
    config: DeployConfig, migrations_copy: Path
) -> None:
    add_revision_0003(
        migrations_copy,
        "Drop report_json.",
        'op.drop_column("precomputed_reports", "report_json")',
    )
    before = aliases(config)
    record = failed_deploy()
    _blocked(record, config, before)
    assert record.trigger["step"] == "migration lint"
    assert "drops a column of precomputed_reports" in record.trigger["error"]
    assert schema.current_revision(config) == "0002"
    assert "report_json" in schema.columns(config, "precomputed_reports")


def test_missing_env_var_in_function_config_blocks(config: DeployConfig) -> None:
    fn = config.functions["query_tool"]
    lam = client(config, "lambda")
    env = {k: v for k, v in fn.env_plain().items() if k != "DB_HOST"}
    lam.update_function_configuration(FunctionName=fn.name, Environment={"Variables": env})
    before = aliases(config)
    try:
        record = failed_deploy()
    finally:
        lam.update_function_configuration(
            FunctionName=fn.name, Environment={"Variables": fn.env_plain()}
        )
    _blocked(record, config, before)
    assert "DB_HOST" in record.trigger["error"]


def test_wrong_architecture_blocks(config: DeployConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    # The image and the functions are x86_64; the configuration says arm64.
    for key in config.functions:
        monkeypatch.setenv(f"GANGWAY_FUNCTIONS__{key.upper()}__ARCHITECTURE", "arm64")
    before = aliases(config)
    record = failed_deploy()
    _blocked(record, config, before)
    assert record.trigger["step"] == "in-image gate"
    assert "architecture" in record.trigger["error"]


# ------------------------------------------------------------------------- concurrency
def test_concurrent_deploy_fails_fast_naming_the_holder(
    config: DeployConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__LOCK_TIMEOUT_S", "1")
    ledger = Ledger()
    holder = ledger.save(DeployRecord(env=ENV, commit_sha="f" * 40, actor="alice@ci"))
    before = aliases(config)
    try:
        with deploy_lock(config, 1, lambda: "test"):
            record = failed_deploy()
    finally:
        holder.outcome = Outcome.FAILED
        ledger.save(holder)
    _blocked(record, config, before)
    assert record.trigger["step"] == "deploy lock"
    assert f"deploy {holder.deploy_id}" in record.trigger["error"]
    assert "alice@ci" in record.trigger["error"]


def test_unreachable_database_is_recorded_and_changes_nothing(
    config: DeployConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DATABASE__PORT", "1")
    before = aliases(config)
    record = failed_deploy()
    assert record.outcome is Outcome.BLOCKED and record.trigger["step"] == "deploy lock"
    assert "127.0.0.1:1" in record.trigger["error"] and "start MySQL" in record.trigger["error"]
    assert aliases(config) == before
    assert_no_secrets(config, record)


def test_missing_function_is_recorded_and_changes_nothing(
    config: DeployConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_FUNCTIONS__API__NAME", "daily-report-dev-api-missing")
    before = aliases(config)
    record = failed_deploy()
    assert record.outcome is Outcome.FAILED and record.trigger["step"] == "observe"
    assert "daily-report-dev-api-missing" in record.trigger["error"]
    assert "does not exist" in record.trigger["error"]
    assert aliases(config) == before


def test_unknown_environment_and_sha_are_bad_input() -> None:
    from gangway.errors import ConfigError

    with pytest.raises(ConfigError):
        deploy(env="qa")
    with pytest.raises(ConfigError) as err:
        deploy(env=ENV, sha="0123456789abcdef0123456789abcdef01234567", dry_run=True)
    assert "does not exist" in str(err.value)


def test_cli_exit_codes_and_json(config: DeployConfig) -> None:
    import subprocess
    import sys

    bad = subprocess.run(
        [sys.executable, "-m", "gangway.cli", "deploy", "--env", "qa"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "qa.toml" in bad.stderr
    plan = subprocess.run(
        [sys.executable, "-m", "gangway.cli", "deploy", "--env", ENV, "--dry-run", "--json"],
        capture_output=True,
        text=True,
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    document = json.loads(plan.stdout[plan.stdout.index("{") :])
    assert document["env"] == ENV and len(document["functions"]) == 7


def test_killed_deploy_is_closed_and_its_aliases_restored_by_the_next(
    config: DeployConfig, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    ledger = Ledger()
    before = aliases(config)
    known = {r.deploy_id for r in ledger.recent(ENV, limit=1000)}
    # A harmless variant, so the killed deploy really moves the aliases to new versions.
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        (REPO_ROOT / "service" / "Dockerfile").read_text() + "\nLABEL variant=killed\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gangway.cli", "deploy", "--env", ENV],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GANGWAY_SERVICE__BUILD__DOCKERFILE": str(dockerfile)},
    )
    moved = None
    deadline = time.monotonic() + 180
    while moved is None and time.monotonic() < deadline and process.poll() is None:
        for record in ledger.recent(ENV, limit=5):
            if record.deploy_id not in known and any(
                m.alias_moved for m in record.functions.values()
            ):
                moved = record
        time.sleep(0.05)
    assert moved is not None, "the deploy never reached the alias move"
    os.kill(process.pid, signal.SIGKILL)  # mid-verification: the alias may point anywhere
    process.wait()
    assert ledger.get(moved.deploy_id).outcome is Outcome.RUNNING

    lam = client(config, "lambda")

    def version_counts() -> dict[str, int]:
        pages = lam.get_paginator("list_versions_by_function")
        return {
            k: sum(len(p["Versions"]) for p in pages.paginate(FunctionName=fn.name))
            for k, fn in config.functions.items()
        }

    published = version_counts()
    record = deploy(env=ENV)  # the next deploy converges
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED
    closed = ledger.get(moved.deploy_id)
    assert closed.outcome is Outcome.INTERRUPTED
    assert closed.rollback and closed.rollback["by"] == "recovery"
    moved_keys = [k for k, m in closed.functions.items() if m.alias_moved]
    assert moved_keys
    for key in moved_keys:
        assert closed.functions[key].version_after != before[key]
        assert closed.rollback["functions"][key]["to"] == before[key]
    # The next deploy is of the digest that was live before: existing versions are reused,
    # so nothing piles up, and the aliases end where that healthy deploy put them.
    assert version_counts() == published
    assert {k: m.version_after for k, m in record.functions.items()} == aliases(config)


def test_migration_failing_halfway_reports_the_exact_schema_state(
    config: DeployConfig, migrations_copy: Path
) -> None:
    add_revision_0003(
        migrations_copy,
        "Add source, then a column that already exists: fails after the first DDL.",
        'op.add_column("precomputed_reports", sa.Column("source", sa.String(32)))',
        'op.add_column("precomputed_reports", sa.Column("symbol", sa.String(16)))',
    )
    before = aliases(config)
    try:
        record = failed_deploy()
    finally:
        with schema.engine(config).begin() as conn:
            if "source" in schema.columns(config, "precomputed_reports"):
                conn.execute(sa.text("ALTER TABLE precomputed_reports DROP COLUMN source"))
    _blocked(record, config, before)
    assert record.trigger["step"] == "migration applied"
    [check] = record.trigger["checks"]
    assert "unexpected ['source']" in check["found"]
    assert "partially applied revision 0003" in check["found"]
    assert schema.current_revision(config) == "0002"
    assert record.image_digest and not any(m.version_after for m in record.functions.values())


def test_registry_down_during_push_blocks_with_a_clear_error(
    config: DeployConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__REGISTRY", "127.0.0.1:1")
    before = aliases(config)
    record = failed_deploy()
    assert record.outcome is Outcome.FAILED and record.trigger["step"] == "push"
    assert "[registry]" in record.trigger["error"]
    assert "127.0.0.1:1" in record.trigger["error"]
    assert record.image_digest is None
    assert not any(m.alias_moved for m in record.functions.values())
    assert aliases(config) == before
