"""The deploy flow end to end on the rehearsal stack: the happy path, dry run, CLI, promotion.

Every failure path (each gate, each trigger, each injected fault) is a row of the fault
matrix in tests/faults/, judged from the aliases read back from AWS and the ledger.
"""

from __future__ import annotations

import json

import pytest

from flows.deploy import deploy
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.plan import DeployPlan
from tasks import lambda_deploy, schema
from tasks.aws import client
from tasks.ledger import DeployRecord, Ledger, Outcome

pytestmark = pytest.mark.stack
ENV = "dev"


def aliases(config: DeployConfig) -> dict[str, str]:
    """Where each function's alias points now, read from AWS."""
    return {
        key: lambda_deploy.read_alias(config, fn.name).version
        for key, fn in config.functions.items()
    }


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


def test_promotion_deploys_the_validated_digest_without_rebuilding(config: DeployConfig) -> None:
    from tasks.source import source_revision

    head = source_revision(REPO_ROOT, []).sha
    validated = deploy(env=ENV, sha=head)  # a clean checkout of HEAD, gated end to end
    assert isinstance(validated, DeployRecord) and validated.outcome is Outcome.SUCCEEDED
    plan = deploy(env=ENV, sha=head[:12], promote=True, dry_run=True)
    assert isinstance(plan, DeployPlan) and plan.steps[0].name == "pull"
    assert plan.promoted_image.endswith("@" + str(validated.image_digest))
    record = deploy(env=ENV, sha=head[:12], promote=True)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED
    assert record.kind == "promote" and record.image_digest == validated.image_digest
    names = [s.name for s in record.steps]
    assert "pull" in names and "build" not in names and "push" not in names
    assert any(validated.deploy_id in note for note in record.notes)
    assert all(m.version_after == aliases(config)[k] for k, m in record.functions.items())
