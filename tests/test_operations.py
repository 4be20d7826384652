"""The README's operations sequence, run exactly as written, then checked from outside.

Two deploys of the example service, `status`, `rollback`, `prune --dry-run`, `prune`,
`unlock`, `ledger list`: every command exits 0, the alias ends on the first deploy's
versions, the rollback, prune and unlock are records of their own, and what prune deleted is
gone while every rollback target stays.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from gangway.config import REPO_ROOT, load_config
from gangway.record import Outcome
from tasks import lambda_read
from tasks.aws import client as aws_client
from tasks.ledger import Ledger

pytestmark = pytest.mark.stack

SECTION = "## Operations: what is live, roll back, prune, unlock"


def readme_commands() -> str:
    """The first sh block of the README's operations section, exactly as written."""
    section = (REPO_ROOT / "README.md").read_text().split(SECTION, 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no ```sh block under {SECTION!r}"
    return match.group(1)


def test_the_operations_sequence_as_the_readme_writes_it(
    stack: object, tmp_path: Path
) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_commands()],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    (repo,) = tmp_path.glob("*/price-alert")
    config = load_config("dev", project=repo)
    (key,) = config.functions
    name = config.functions[key].name
    records = Ledger().recent("dev", limit=20, service=config.service.name)
    kinds = [r.kind for r in records]
    assert kinds[:4] == ["unlock", "prune", "rollback", "deploy"], kinds
    unlock, prune, rollback, second = records[:4]
    first = records[4]
    assert first.kind == "deploy" and first.outcome is Outcome.SUCCEEDED
    assert all(r.outcome is Outcome.SUCCEEDED for r in (second, rollback, prune, unlock))
    assert "v2 misbehaves" in " ".join([*rollback.notes, rollback.message])
    v1 = first.functions[key].version_after
    v2 = second.functions[key].version_after
    assert v1 and v2 and v1 != v2
    live = lambda_read.describe_functions(config)[key]
    assert live.alias.version == v1 and not live.alias.weights
    # status showed the second deploy's record behind the alias before the rollback.
    assert second.deploy_id[:12] in done.stdout
    # Prune kept every rollback target: the live version and the one before it.
    lam = aws_client(config, "lambda")
    for version in (v1, v2):
        lam.get_function(FunctionName=name, Qualifier=version)
    published = {
        v["Version"]
        for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
        for v in page["Versions"]
    } - {"$LATEST"}
    # The seeded bootstrap version (what the first deploy moved away from) is outside the
    # kept window and no alias routes to it: prune deleted it.
    before_first = first.functions[key].version_before
    assert before_first and before_first not in {v1, v2}
    assert published == {v1, v2}, published
    with pytest.raises(ClientError):
        lam.get_function(FunctionName=name, Qualifier=before_first)
