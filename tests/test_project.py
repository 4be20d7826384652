"""A service from another repository: its checkout is the source, and it declares its gates.

A small service (one function, no database, no bucket, no ground truth, logs nothing) is made
as its own git repository by the test, seeded on the rehearsal stack with `gangway stack seed`
and deployed with `gangway deploy --project`, each as a user runs it (a subprocess). What is
asserted is read back from the world: the ledger, the image's label, the alias.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import docker as docker_sdk
import pytest
import sqlalchemy as sa
from service_repo import (
    APP,
    DEV_TOML,
    KEY,
    SERVICE,
    SERVICE_TOML,
    _git,
    explain,
    gangway,
    make_service,
)

from gangway.config import REPO_ROOT, load_config
from gangway.errors import ConfigError
from gangway.record import Event, EventKind, Outcome
from tasks import lambda_read
from tasks.env_lock import DeployLockError, DeployLockLost
from tasks.lease_lock import LEASES, lease_lock, lease_name
from tasks.ledger import Ledger


@pytest.fixture(scope="module")
def seeded(stack: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's repository, seeded on the rehearsal stack with `gangway stack seed`."""
    repo = make_service(tmp_path_factory.mktemp("svc") / "echo")
    done = gangway("stack", "seed", "--project", str(repo), "--env", "dev")
    assert done.returncode == 0, explain(done)
    assert f"function {SERVICE}-dev-{KEY} (alias live, log group; the image's CMD)" in done.stdout
    assert "bucket" not in done.stdout and "database" not in done.stdout
    return repo


@pytest.mark.stack
def test_deploy_records_the_service_repositorys_commit(seeded: Path) -> None:
    """The ledger and the image label carry the service's commit, not gangway's, and the
    plan holds only the gates the service declares."""
    head = _git(seeded, "rev-parse", "HEAD")
    assert head != _git(REPO_ROOT, "rev-parse", "HEAD")
    done = gangway("deploy", "--project", str(seeded), "--env", "dev", "--json")
    assert done.returncode == 0, explain(done)
    record = json.loads(done.stdout)
    assert record["commit_sha"] == head and record["dirty"] is False
    assert record["service"] == SERVICE
    assert record["outcome"] == Outcome.SUCCEEDED.value
    # Nothing of a database was touched, and no ground truth was pretended.
    steps = [s["name"] for s in record["steps"]]
    assert steps == [
        "build", "in-image gate", "push", "config gate", "deploy", "shift traffic", "smoke",
        "log scan",
    ]
    assert record["evidence"] == "observability"
    assert record["schema_before"] is None and record["schema_after"] is None
    assert any("ground truth (no smoke case declares ground_truth)" in n for n in record["notes"])
    # The log scan passed a function that logs nothing because it says so.
    scan = next(g for g in record["gates"] if g["gate"] == "log scan")
    app = next(c for c in scan["checks"] if c["name"].endswith("application log lines"))
    assert "app_logs = false" in app["expected"]
    image = docker_sdk.from_env().images.get(record["image_ref"])
    assert image.labels["org.opencontainers.image.revision"] == head
    config = load_config("dev", project=seeded)
    live = lambda_read.describe_functions(config)[KEY]
    assert live.alias.version == record["functions"][KEY]["version_after"]


@pytest.mark.stack
def test_sha_resolves_in_the_service_repository(seeded: Path) -> None:
    """`--sha` names a commit of the service's repository; an unknown one is refused there."""
    first = _git(seeded, "rev-parse", "HEAD")
    (seeded / "src" / "app.py").write_text(APP + "\n# second commit\n")
    _git(seeded, "commit", "-qam", "second")
    done = gangway(
        "deploy", "--project", str(seeded), "--env", "dev", "--sha", first[:10], "--dry-run"
    )
    assert done.returncode == 0, explain(done)
    assert f"commit   {first}" in done.stdout
    assert "verify columns: no [environment.database] declared" in done.stdout
    refused = gangway(
        "deploy", "--project", str(seeded), "--env", "dev", "--sha", "0123456789abcdef"
    )
    assert refused.returncode == 2, explain(refused)
    assert f"does not exist in {seeded}" in refused.stderr


@pytest.mark.stack
def test_an_environment_requiring_ground_truth_refuses_before_anything_moves(
    seeded: Path,
) -> None:
    config = load_config("dev", project=seeded)
    before = lambda_read.describe_functions(config)[KEY].alias.version
    done = gangway(
        "deploy", "--project", str(seeded), "--env", "dev",
        env={"GANGWAY_ENVIRONMENT__DEPLOY__REQUIRE": "ground-truth"},
    )
    assert done.returncode == 2, explain(done)
    assert "requires ground-truth evidence" in done.stderr
    assert "environment.deploy.require" in done.stderr
    assert lambda_read.describe_functions(config)[KEY].alias.version == before
    refused = Ledger().recent("dev", limit=1)[0]
    assert refused.outcome is Outcome.REFUSED


@pytest.mark.stack
def test_a_function_that_must_log_and_does_not_is_rolled_back(seeded: Path) -> None:
    """app_logs is the declaration the log scan honours: without it the same code is a
    rollback trigger, as a handler that lost its logger is."""
    config = load_config("dev", project=seeded)
    before = lambda_read.describe_functions(config)[KEY].alias.version
    (seeded / "src" / "app.py").write_text(APP + "\n# third commit\n")
    _git(seeded, "commit", "-qam", "third")
    done = gangway(
        "deploy", "--project", str(seeded), "--env", "dev", "--json",
        env={f"GANGWAY_FUNCTIONS__{KEY.upper()}__APP_LOGS": "true"},
    )
    assert done.returncode == 1, explain(done)
    record = json.loads(done.stdout)
    assert record["outcome"] == Outcome.ROLLED_BACK.value
    assert record["trigger"]["step"] == "log scan"
    assert lambda_read.describe_functions(config)[KEY].alias.version == before


def test_undeclared_storage_is_named_before_any_side_effect(tmp_path: Path) -> None:
    """No default migrations folder; a declared one that is missing, tables or row ground
    truth without a database, an object without a bucket: ConfigError naming the key."""
    repo = tmp_path / "svc"
    (repo / "deployments").mkdir(parents=True)
    (repo / "deployments" / "dev.toml").write_text(DEV_TOML)

    def load(extra: str) -> ConfigError | None:
        (repo / "deployments" / "service.toml").write_text(SERVICE_TOML + extra)
        try:
            config = load_config("dev", project=repo)
        except ConfigError as exc:
            return exc
        assert config.migrations_dir is None and config.environment.database is None
        return None

    assert load("") is None
    text = SERVICE_TOML.replace('name = "gw-echo"\n', 'name = "gw-echo"\nmigrations = "db"\n', 1)
    (repo / "deployments" / "service.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"service.migrations = 'db' is not an alembic folder"):
        load_config("dev", project=repo)
    tables = textwrap.dedent(f"""
        [[tables]]
        name = "t"
        writers = ["{KEY}"]
        columns = {{ c = {{ type = "int" }} }}
    """)
    exc = load(tables)
    assert exc is not None and "[[tables]] need a database" in exc.message
    obj = textwrap.dedent("""
        [smoke.ground_truth.object]
        key = "k"
    """)
    exc = load(obj)
    assert exc is not None and "declares none" in exc.message and "bucket" in exc.expected


def test_a_project_without_deployments_is_refused(tmp_path: Path) -> None:
    done = gangway("deploy", "--project", str(tmp_path), "--env", "dev")
    assert done.returncode == 2, explain(done)
    assert "is not a gangway project" in done.stderr and "gangway init" in done.stderr


def test_the_lease_lock_serialises_and_fences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a database the deploy lock is a lease in the ledger store: a second holder
    waits and is refused naming the first; a holder whose lease was taken is fenced."""
    monkeypatch.setenv("GANGWAY_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    repo = make_service(tmp_path / "svc")
    config = load_config("dev", project=repo)
    with lease_lock(config, 0, lambda: "the first") as first:
        first.verify()
        started = time.monotonic()
        with pytest.raises(DeployLockError, match="in progress") as refused:
            with lease_lock(config, 1, lambda: "the first deploy"):
                pass
        assert time.monotonic() - started >= 1
        assert "the first deploy" in refused.value.found
        # The lease expires (a stalled holder) and another deploy takes it over.
        engine = Ledger().engine
        with engine.begin() as conn:
            conn.execute(
                LEASES.update().where(LEASES.c.name == lease_name(config)).values(expires=0)
            )
        with lease_lock(config, 0, lambda: "-"):
            with pytest.raises(DeployLockLost, match="was lost"):
                first.verify()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(LEASES)).scalar() == 0


def test_recovery_of_one_service_leaves_another_services_deploys_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.recovery import pending_recovery

    monkeypatch.setenv("GANGWAY_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    for service, deploy_id in (("other", "a" * 32), (SERVICE, "b" * 32)):
        ledger.append(
            Event(
                deploy_id=deploy_id,
                kind=EventKind.STARTED,
                data={"env": "dev", "commit_sha": "c" * 40, "service": service},
            ),
            "dev",
        )
    assert [r.deploy_id for r in pending_recovery(ledger, "dev", SERVICE)] == ["b" * 32]
    assert len(pending_recovery(ledger, "dev")) == 2


@pytest.mark.stack
def test_a_worker_run_deploys_the_project_it_is_given(seeded: Path) -> None:
    """Flows run by the Prefect worker take the service's checkout as a parameter: the commit
    recorded is the project's, not the worker's working directory's (gangway's)."""
    from prefect.deployments import run_deployment

    from gangway.config import gangway_home
    from tasks.ledger import ledger_url

    head = _git(seeded, "rev-parse", "HEAD")
    known = set(Ledger().deploy_ids())
    run = run_deployment(
        "deploy/deploy-dev",
        parameters={"project": str(seeded)},
        job_variables={
            "env": {"GANGWAY_LEDGER_URL": ledger_url(), "GANGWAY_HOME": str(gangway_home())}
        },
        timeout=600,
        poll_interval=1,
        as_subflow=False,
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.name == f"dev · {head[:7]} · deploy", run.name
    # dev's records only: the fault matrix deploys to qa meanwhile (tests/conftest.py lanes).
    fresh = [
        r
        for i in Ledger().deploy_ids()
        if i not in known and (r := Ledger().get(i)) and r.env == "dev"
    ]
    assert [(r.service, r.commit_sha, r.outcome) for r in fresh] == [
        (SERVICE, head, Outcome.SUCCEEDED)
    ]


@pytest.mark.stack
def test_seeding_invents_nothing_the_service_does_not_declare(
    stack: object, tmp_path: Path
) -> None:
    """A new environment of a service without a database: seeding generates exactly the
    secret its configuration references, no database password and none of the reference
    service's secrets, and sets no command override."""
    from rehearsal.mariadb_setup import read_stack_env

    repo = make_service(tmp_path / "svc")
    qa = DEV_TOML.replace('name = "dev"', 'name = "qa"').replace(
        'TZ = "UTC"', 'TZ = "UTC"\nAPI_TOKEN = "${GANGWAY_QA_API_TOKEN}"'
    )
    (repo / "deployments" / "qa.toml").write_text(qa)
    before = read_stack_env()
    done = gangway("stack", "seed", "--project", str(repo), "--env", "qa")
    assert done.returncode == 0, explain(done)
    added = set(read_stack_env()) - set(before)
    assert added <= {"GANGWAY_QA_API_TOKEN"}, added
    assert "GANGWAY_QA_API_TOKEN" in read_stack_env()
    config = load_config("qa", project=repo)
    live = lambda_read.describe_functions(config)[KEY]
    assert not live.image_config.get("Command"), live.image_config


@pytest.mark.stack
def test_a_killed_deploy_of_a_service_without_a_database_is_recovered(seeded: Path) -> None:
    """The lease outlives its killed holder by at most its expiry; the next deploy of the
    same service waits for it, restores the alias the killed deploy moved, and closes it."""
    import signal

    from tasks.lease_lock import LEASE_TTL_S

    config = load_config("dev", project=seeded)
    before = lambda_read.describe_functions(config)[KEY].alias.version
    slow = APP.replace("def handler(event, context):\n", "def handler(event, context):\n"
                       "    import time\n    time.sleep(8)\n")
    (seeded / "src" / "app.py").write_text(slow)
    _git(seeded, "commit", "-qam", "slow smoke")
    known = set(Ledger().deploy_ids())
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "deploy", "--project", str(seeded), "--env", "dev"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        record = None
        while time.monotonic() < deadline:
            fresh = [i for i in Ledger().deploy_ids("dev") if i not in known]
            record = Ledger().get(fresh[0]) if fresh else None
            if record and (
                record.finished_at or any(s.name == "shift traffic" for s in record.steps)
            ):
                break
            time.sleep(0.5)
        assert record is not None and record.steps[-1].name == "shift traffic", record
        time.sleep(1)  # the smoke invoke is running the slow version (8 s) now
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert lambda_read.describe_functions(config)[KEY].alias.version != before
    (seeded / "src" / "app.py").write_text(APP + "\n# after the kill\n")
    _git(seeded, "commit", "-qam", "fixed")
    started = time.monotonic()
    done = gangway("deploy", "--project", str(seeded), "--env", "dev", "--json")
    assert done.returncode == 0, explain(done)
    assert time.monotonic() - started < LEASE_TTL_S + 60
    killed = Ledger().get(record.deploy_id)
    assert killed is not None and killed.outcome is Outcome.INTERRUPTED, killed
    assert killed.rollback is not None, killed
    assert killed.rollback["functions"][KEY] == {"to": before, "verified": True}, killed.rollback
    assert json.loads(done.stdout)["outcome"] == Outcome.SUCCEEDED.value
