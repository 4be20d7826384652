"""The deploy flow end to end on the rehearsal stack: the happy path, dry run, CLI, promotion.

Every failure path (each gate, each trigger, each injected fault) is a row of the fault
matrix in tests/faults/, judged from the aliases read back from AWS and the ledger.
"""

from __future__ import annotations

import itertools
import json

import pytest
from alias_reads import settle

from flows.deploy import deploy
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.plan import DeployPlan
from gangway.record import DeployRecord, Outcome
from tasks import lambda_read, schema
from tasks.aws import client
from tasks.ledger import Ledger

pytestmark = pytest.mark.stack
ENV = "dev"


def aliases(config: DeployConfig) -> dict[str, str]:
    """Where each function's alias points now, read from AWS (settled)."""
    settle(config)
    return {
        key: lambda_read.read_alias(config, fn.name).version
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


def test_the_plan_is_what_runs_and_prefect_sees_the_chain(config: DeployConfig) -> None:
    """The steps a real run records are exactly its dry run's; Prefect's graph is the chain."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    plan = deploy(env=ENV, dry_run=True)
    record = deploy(env=ENV)
    assert isinstance(plan, DeployPlan) and isinstance(record, DeployRecord)
    assert [s.name for s in record.steps] == [s.name for s in plan.steps]
    assert {"migration applied", "migrate"} <= {s.name for s in plan.steps}
    assert record.flow_run_id
    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(record.flow_run_id)
        tasks = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    assert run.name == f"{ENV} · {record.commit_sha[:7]} · deploy"
    chain = sorted(
        (t for t in tasks if t.name in {s.name for s in plan.steps}),
        key=lambda t: t.expected_start_time or t.created,
    )
    assert [t.name for t in chain] == [s.name for s in plan.steps]
    for before, after in itertools.pairwise(chain):
        waited = {str(i.id) for i in after.task_inputs.get("wait_for", [])}
        assert waited == {str(before.id)}, (after.name, before.name)


def test_dry_run_prints_the_plan_and_changes_nothing(config: DeployConfig) -> None:
    before, count = aliases(config), len(Ledger().recent(ENV, limit=1000))
    plan = deploy(env=ENV, dry_run=True)
    assert isinstance(plan, DeployPlan)
    # A clean commit whose image is already pushed is reused, not rebuilt (test_image_reuse.py).
    first = "reuse image" if plan.reusable_image else "build"
    assert [s.name for s in plan.steps][:3] == [first, "in-image gate", "push"]
    assert {f.name for f in plan.functions} == {f.name for f in config.functions.values()}
    assert aliases(config) == before
    assert len(Ledger().recent(ENV, limit=1000)) == count


def test_cli_exit_codes_and_json(config: DeployConfig) -> None:
    import subprocess
    import sys

    bad = subprocess.run(
        [sys.executable, "-m", "cli", "deploy", "--env", "sandbox"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "sandbox.toml" in bad.stderr
    plan = subprocess.run(
        [sys.executable, "-m", "cli", "deploy", "--env", ENV, "--dry-run", "--json"],
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
    # Promotion is its own flow (flows/promote.py): dev's validated image, to staging.
    from flows.promote import promote

    target = dict(sha=head[:12], source_env=ENV, target_env="staging", reason="flow test")
    plan = promote(**target, dry_run=True)
    assert isinstance(plan, DeployPlan) and plan.steps[0].name == "pull"
    assert plan.promoted_image.endswith("@" + str(validated.image_digest))
    record = promote(**target)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED
    assert record.kind == "promote" and record.image_digest == validated.image_digest
    steps = {s.name: s.status for s in record.steps}
    assert [s.name for s in record.steps] == [s.name for s in plan.steps]
    assert "build" not in steps and steps["pull"] == "passed" and steps["push"] == "skipped"
    assert any(validated.deploy_id in note for note in record.notes)
    staging = aliases(load_config("staging"))
    assert all(m.version_after == staging[k] for k, m in record.functions.items())
