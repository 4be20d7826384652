"""Per-invoke log evidence and headroom hold for a service of another shape: one function, no
database, no bucket, no ground truth, no application log lines (tests/service_repo.py).

Deployed with the CLI as a user runs it: its log scan ties the smoke invoke to its START, END
and REPORT lines and judges its REPORT against the headroom; the same service whose handler
uses 85 % of its timeout is rolled back by that judgement.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_repo import APP, KEY, SERVICE, _git, explain, gangway, make_service

from gangway.config import load_config
from gangway.record import Outcome
from rehearsal.lambda_waits import wait_updated
from tasks import lambda_read
from tasks.aws import client

NAME = f"{SERVICE}-dev-{KEY}"
SLOW_APP = APP.replace(
    "def handler(event, context):\n",
    "def handler(event, context):\n    import time\n\n    time.sleep(8.5)  # of a 10 s timeout\n",
)


@pytest.fixture(scope="module")
def seeded(stack: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's repository, seeded on the rehearsal stack with `gangway stack seed`."""
    repo = make_service(tmp_path_factory.mktemp("svc") / "echo")
    done = gangway("stack", "seed", "--project", str(repo), "--env", "dev")
    assert done.returncode == 0, explain(done)
    return repo


def deploy(repo: Path, app: str, message: str) -> tuple[int, dict]:
    """Commit app as the handler (a new image), deploy it; (exit code, the record)."""
    (repo / "src" / "app.py").write_text(app + f"\n# {message}\n")
    _git(repo, "commit", "-qam", message)
    done = gangway("deploy", "--project", str(repo), "--env", "dev", "--json")
    assert done.returncode in (0, 1), explain(done)
    return done.returncode, json.loads(done.stdout)


def checks(record: dict, gate: str = "log scan") -> dict[str, dict]:
    """A gate's checks in the record, by name."""
    found = next(g for g in record["gates"] if g["gate"] == gate)
    return {c["name"]: c for c in found["checks"]}


@pytest.mark.stack
def test_each_invoke_is_found_and_judged_for_headroom(seeded: Path) -> None:
    code, record = deploy(seeded, APP, "healthy")
    assert code == 0 and record["outcome"] == Outcome.SUCCEEDED.value, record["message"]
    scan = checks(record)
    [invocation] = [c for n, c in scan.items() if ": invocation " in n]
    assert invocation["ok"] and invocation["evidence"]["lines"] == ["START", "END", "REPORT"]
    duration = scan[f"headroom: {NAME}: duration headroom"]
    memory = scan[f"headroom: {NAME}: memory headroom"]
    assert duration["ok"] and memory["ok"] and scan[f"headroom: {NAME}: no timeouts"]["ok"]
    # Observed against limit, from the function's own configuration (10 s, 256 MB).
    assert duration["evidence"]["limit_ms"] == 8000
    assert 0 < duration["evidence"]["observed_ms"] < 8000
    assert memory["evidence"]["limit_mb"] == pytest.approx(230.4)
    assert 0 < memory["evidence"]["observed_mb"] <= 230.4
    assert duration["evidence"]["requests"] == [invocation["evidence"]["request_id"]]


@pytest.mark.stack
def test_a_handler_using_85_percent_of_its_timeout_is_rolled_back(seeded: Path) -> None:
    config = load_config("dev", project=seeded)
    before = lambda_read.describe_functions(config)[KEY].alias.version
    code, record = deploy(seeded, SLOW_APP, "slow")
    assert code == 1 and record["outcome"] == Outcome.ROLLED_BACK.value, record["message"]
    assert record["trigger"]["step"] == "log scan"
    [check] = record["trigger"]["checks"]
    assert check["name"] == f"headroom: {NAME}: duration headroom"
    assert 8000 < check["evidence"]["observed_ms"] < 10_000
    assert "80% of the 10 s timeout" in check["expected"]
    smoke = next(g for g in record["gates"] if g["gate"] == "smoke")
    assert smoke["checks"] and all(c["ok"] for c in smoke["checks"])
    assert lambda_read.describe_functions(config)[KEY].alias.version == before


@pytest.mark.stack
def test_the_json_log_format_gives_the_same_evidence(seeded: Path) -> None:
    """With LoggingConfig.LogFormat = JSON the platform lines are JSON records; the invoke is
    still tied to its start, runtimeDone and report records, and its report judged."""
    config = load_config("dev", project=seeded)
    lam = client(config, "lambda")
    lam.update_function_configuration(FunctionName=NAME, LoggingConfig={"LogFormat": "JSON"})
    wait_updated(lam, NAME)  # a deploy's update meanwhile would meet a ResourceConflict
    try:
        code, record = deploy(seeded, APP, "json logs")
    finally:
        wait_updated(lam, NAME)
        lam.update_function_configuration(FunctionName=NAME, LoggingConfig={"LogFormat": "Text"})
        wait_updated(lam, NAME)
    assert code == 0 and record["outcome"] == Outcome.SUCCEEDED.value, record["message"]
    scan = checks(record)
    [invocation] = [c for n, c in scan.items() if ": invocation " in n]
    assert invocation["ok"] and invocation["evidence"]["lines"] == ["START", "END", "REPORT"]
    duration = scan[f"headroom: {NAME}: duration headroom"]
    assert duration["ok"] and duration["evidence"]["log_format"] == "json"
    assert '"platform.report"' in duration["evidence"]["worst_line"]
