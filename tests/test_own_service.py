"""The README's "Deploy your own service", followed literally, on the second example service.

examples/price-alert differs from the reference service in every way the pipeline used to
assume: its own git repository, one function, no database, no bucket, a SAM layout with
template.yaml and events/, a Dockerfile written for the official base image that installs a
compiled wheel with pip, an event with nulls, and a handler that logs nothing. The README's
commands init it, seed it on the rehearsal stack and deploy it; then broken variants are
blocked before traffic.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT, load_config
from gangway.record import Outcome
from tasks import lambda_read
from tasks.ledger import Ledger
from tasks.smoke import smoke_invoke

pytestmark = pytest.mark.stack

SECTION = "## Deploy your own service"


def readme_commands() -> str:
    """The first sh block of the README's section, exactly as written."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split(SECTION, 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no ```sh block under {SECTION!r}"
    return match.group(1)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def deploy(repo: Path) -> tuple[int, dict[str, object]]:
    """`gangway deploy --project repo --env dev --json`: exit code and the record."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", "deploy", "--project", str(repo), "--env", "dev", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.stdout.strip().startswith("{"), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def followed(stack: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The README's commands run by bash from the repository root: the service's checkout
    and everything they printed."""
    tmp = tmp_path_factory.mktemp("readme")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_commands()],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (repo,) = tmp.glob("*/price-alert")
    return repo, done.stdout


def test_the_readme_deploys_the_example_from_its_own_repository(
    followed: tuple[Path, str],
) -> None:
    repo, out = followed
    head = _git(repo, "rev-parse", "HEAD")
    assert head != _git(REPO_ROOT, "rev-parse", "HEAD")
    assert "SUCCEEDED" in out, out[-3000:]
    assert f"commit  {head}\n" in out  # clean: the service's own commit, not gangway's
    record = next(r for r in Ledger().recent("dev", service="price-alert"))
    assert (record.commit_sha, record.dirty, record.outcome) == (head, False, Outcome.SUCCEEDED)
    assert record.evidence == "observability"
    assert [s.name for s in record.steps] == [
        "build", "in-image gate", "push", "config gate", "deploy", "shift traffic", "smoke",
        "log scan",
    ]
    # init wrote what the SAM template says, and the event file's nulls reached the function.
    config = load_config("dev", project=repo)
    (key,) = config.functions
    assert key == "price_alert" and config.functions[key].spec.handler == "app.lambda_handler"
    assert config.environment.database is None and config.environment.bucket is None
    case = next(c for c in config.smoke if c.event_file == "events/alert.json")
    assert case.event["note"] is None and case.event["request_id"] == "{correlation_id}"
    answer = smoke_invoke(config, case, config.environment.alias, "corr-1234")
    assert answer.payload is not None and answer.payload["statusCode"] == 200, answer
    body = json.loads(answer.payload["body"])
    # The function echoes both: the null arrived as a null, the id substituted.
    assert body["note"] is None and "note" in body and body["correlation_id"] == "corr-1234"


@pytest.mark.parametrize(
    ("variant", "edit", "found"),
    [
        (
            "a module not copied into the image",
            lambda d: d.replace("COPY app.py alerts.py", "COPY app.py"),
            "No module named 'alerts'",
        ),
        (
            "a CMD naming a missing function",
            lambda d: d.replace('CMD ["app.lambda_handler"]', 'CMD ["app.handler"]'),
            "app.handler",
        ),
    ],
)
def test_broken_variants_are_blocked_before_traffic(
    followed: tuple[Path, str], variant: str, edit: object, found: str
) -> None:
    repo, _ = followed
    config = load_config("dev", project=repo)
    (fn,) = config.functions.values()
    before = lambda_read.describe_functions(config)
    dockerfile = repo / "src" / "Dockerfile"
    original = dockerfile.read_text()
    dockerfile.write_text(edit(original))  # type: ignore[operator]
    _git(repo, "commit", "-qam", variant)
    try:
        code, record = deploy(repo)
    finally:
        dockerfile.write_text(original)
        _git(repo, "commit", "-qam", f"revert: {variant}")
    assert code == 1, record
    assert record["outcome"] == Outcome.BLOCKED.value, record["message"]
    assert record["trigger"]["step"] == "in-image gate"  # type: ignore[index]
    assert found in json.dumps(record["trigger"])
    after = lambda_read.describe_functions(config)
    assert after[next(iter(after))].alias == before[next(iter(before))].alias, fn.name
