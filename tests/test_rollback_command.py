"""`gangway rollback` as an operator runs it: a subprocess, on the real rehearsal stack.

Two deploys of the reference service to ``prod`` (HEAD, then a scratch commit of it), shared by
the module: a rollback returns the aliases to the first deploy's versions without a rebuild,
and a rollback to the second is refused while the live schema lacks a column its code writes.
A service without a database rolls back through its lease lock. What is asserted is read back
from the world: boto3 for the aliases, the ledger for the record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from service_repo import KEY, _git, explain, gangway, make_service
from test_cli import HEADLINE, Run, run

from gangway.config import REPO_ROOT, load_config
from gangway.record import DeployRecord, Outcome
from rehearsal.scratch_commits import ScratchCommits
from tasks import lambda_read, schema
from tasks.ledger import Ledger

pytestmark = pytest.mark.stack

ENV = "prod"  # test_cli deploys to staging, the flow tests to dev
TABLE, COLUMN = "precomputed_reports", "report_json"  # written by report_worker


def aliases(env: str, project: str | None = None) -> dict[str, str]:
    """Function key → the version its alias routes all traffic to, read with boto3."""
    live = lambda_read.describe_functions(load_config(env, project=project))
    return {k: fn.alias.version for k, fn in live.items() if not fn.alias.weights}


def versions(record: DeployRecord) -> dict[str, str]:
    """Function key → the version the record put its alias on."""
    return {k: str(m.version_after) for k, m in record.functions.items()}


def deployed(result: Run) -> DeployRecord:
    """The succeeded deploy a `gangway deploy` printed, from the ledger."""
    assert result.code == 0, result.explain()
    match = HEADLINE.search(result.out)
    assert match, result.explain()
    record = Ledger().get(match.group(1))
    assert record is not None and record.outcome is Outcome.SUCCEEDED
    return record


def newest_rollback(env: str, service: str) -> DeployRecord:
    """The newest rollback record of service in env."""
    found = [r for r in Ledger().recent(env, limit=20, service=service) if r.kind == "rollback"]
    assert found, "no rollback record in the ledger"
    return found[0]


@pytest.fixture(scope="module")
def two_deploys(stack: object) -> Iterator[tuple[DeployRecord, DeployRecord]]:
    """HEAD deployed to prod, then a scratch commit of it (new image, new versions)."""
    first = deployed(run("deploy", "--env", ENV))
    with ScratchCommits(REPO_ROOT, ["service"]) as scratch:
        second = deployed(run("deploy", "--env", ENV, "--sha", scratch.commit()))
        assert versions(second) != versions(first)
        yield first, second


def test_rollback_returns_the_aliases_to_the_previous_deploy(
    two_deploys: tuple[DeployRecord, DeployRecord],
) -> None:
    first, second = two_deploys
    assert aliases(ENV) == versions(second)
    reason = "report_worker errors since the scratch deploy"
    done = run("rollback", "--env", ENV, "--reason", reason)
    assert done.code == 0, done.explain()
    assert aliases(ENV) == versions(first), "the aliases are not on the first deploy's versions"
    record = newest_rollback(ENV, first.service)
    assert record.outcome is Outcome.SUCCEEDED, record.message
    assert record.kind == "rollback" and record.traffic["rollback_to"] == first.deploy_id
    assert record.traffic["rollback_of"] == second.deploy_id
    assert f"reason: {reason}" in record.notes
    assert any(first.deploy_id in n for n in record.notes)
    assert (record.commit_sha, record.image_digest) == (first.commit_sha, first.image_digest)
    assert versions(record) == versions(first)
    assert all(m.alias_moved for m in record.functions.values())
    smoke = [g for g in record.gates if g.gate == "smoke"]
    assert smoke and smoke[0].status.value == "passed"
    # No rebuild: no build, push or deploy step ran, and no version was published.
    assert [s.name for s in record.steps] == ["shift traffic", "smoke"]
    assert re.search(r"schema requirement: \d+ columns .* still hold", " ".join(record.notes))
    # What is live now is the target: a second rollback to it is refused, nothing moves.
    again = run("rollback", "--env", ENV, "--reason", "again", "--to", first.deploy_id[:10])
    assert again.code == 2, again.explain()
    assert "is what is live" in again.err
    assert aliases(ENV) == versions(first)


def test_rollback_refused_when_the_schema_lost_a_column_the_target_writes(
    two_deploys: tuple[DeployRecord, DeployRecord],
) -> None:
    before = aliases(ENV)
    # The one not live (the second, after the test above rolled back to the first).
    target = next(r for r in reversed(two_deploys) if versions(r) != before)
    config = load_config(ENV)
    engine = schema.engine(config)
    renamed = f"{COLUMN}_gone"
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {TABLE} RENAME COLUMN {COLUMN} TO {renamed}"))
    try:
        done = run("rollback", "--env", ENV, "--to", target.deploy_id, "--reason", "try")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {TABLE} RENAME COLUMN {renamed} TO {COLUMN}"))
        engine.dispose()
    assert done.code == 2, done.explain()
    assert f"{TABLE}.{COLUMN}" in done.err and "column does not exist" in done.err
    assert "contract migrations are never undone" in done.err
    assert aliases(ENV) == before, "a refused rollback moved an alias"
    record = newest_rollback(ENV, target.service)
    assert record.outcome is Outcome.REFUSED
    assert record.traffic["rollback_to"] == target.deploy_id
    gate = next(g for g in record.gates if g.gate == "schema requirement")
    assert [c.name for c in gate.failures] == [f"{TABLE}.{COLUMN}"]
    assert not record.functions, "a refused rollback recorded moved functions"


def test_rollback_without_reason_or_with_an_unknown_target_is_refused(stack: object) -> None:
    done = run("rollback", "--env", ENV, "--reason", "  ")
    assert done.code == 2 and "a rollback needs a reason" in done.err, done.explain()
    done = run("rollback", "--env", ENV, "--reason", "x", "--to", "0123456789abcdef")
    assert done.code == 2 and "no deploy '0123456789abcdef'" in done.err, done.explain()


def test_a_service_without_a_database_rolls_back_through_its_lease(
    stack: object, tmp_path: Path
) -> None:
    repo = make_service(tmp_path / "echo")
    seeded = gangway("stack", "seed", "--project", str(repo), "--env", "dev")
    assert seeded.returncode == 0, explain(seeded)
    first = gangway("deploy", "--project", str(repo), "--env", "dev", "--json")
    assert first.returncode == 0, explain(first)
    app = repo / "src" / "app.py"
    app.write_text(app.read_text().replace('"ok": True', '"ok": True, "v": 2'))
    _git(repo, "commit", "-qam", "v2")
    second = gangway("deploy", "--project", str(repo), "--env", "dev", "--json")
    assert second.returncode == 0, explain(second)
    v1 = json.loads(first.stdout)["functions"][KEY]["version_after"]
    v2 = json.loads(second.stdout)["functions"][KEY]["version_after"]
    assert v1 != v2 and aliases("dev", str(repo)) == {KEY: v2}
    done = gangway(
        "rollback", "--project", str(repo), "--env", "dev", "--reason", "v2 answers wrong",
        "--json",
    )
    assert done.returncode == 0, explain(done)
    assert aliases("dev", str(repo)) == {KEY: v1}
    record = json.loads(done.stdout)
    assert record["kind"] == "rollback" and record["outcome"] == "succeeded"
    assert record["traffic"]["rollback_to"] == json.loads(first.stdout)["deploy_id"]
    # No database, so no named lock: only the lease in the ledger store could have held it.
    assert "schema requirement: none (the service declares no database)" in record["notes"]
    assert record["message"].startswith("rolled back to deploy ")
    # A target whose versions fail today's smoke cases: the aliases go back where they were.
    toml = repo / "deployments" / "service.toml"
    toml.write_text(toml.read_text().replace("expect = { ok = true }", "expect = { v = 1 }"))
    failed = gangway(
        "rollback", "--project", str(repo), "--env", "dev", "--reason", "try v2 again",
        "--to", json.loads(second.stdout)["deploy_id"], "--json",
    )
    assert failed.returncode == 1, explain(failed)
    assert aliases("dev", str(repo)) == {KEY: v1}, "a failed rollback left the alias moved"
    record = json.loads(failed.stdout)
    assert record["outcome"] == "rolled-back" and record["rollback"]["result"] == "verified"
    assert record["functions"][KEY]["restored_to"] == v1
