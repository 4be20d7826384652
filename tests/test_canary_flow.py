"""Canary deploys that must succeed: a healthy canary with enough traffic is promoted, and a
canary of the version already live is a no-op success that says so.

The bake's failing paths (errors under traffic, too little traffic) are rows of the fault
matrix (tests/faults/test_canary.py).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from alias_reads import settle

from flows.deploy import deploy
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.record import DeployRecord, Outcome
from tasks import lambda_read, logs_scan, schema
from tasks.ledger import Ledger
from tasks.smoke import smoke_invoke

# The fault matrix's environment, so this module runs in its lane (tests/conftest.py).
pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("qa")]
# The environment the fault matrix deploys to (one per engineer when run side by side).
ENV = os.environ.get("GANGWAY_FAULTS_ENV", "qa")
DEPLOY = "GANGWAY_ENVIRONMENT__DEPLOY__"


def aliases(config: DeployConfig) -> dict[str, tuple[str, dict[str, float]]]:
    """Where each function's alias points now, with its weights, read from AWS (settled)."""
    settle(config)
    out = {}
    for key, fn in config.functions.items():
        state = lambda_read.read_alias(config, fn.name)
        out[key] = (state.version, dict(state.weights))
    return out


@pytest.fixture
def live(stack: object) -> DeployRecord:
    """A successful all-at-once deploy of the working tree: what is live now."""
    schema.upgrade(load_config(ENV))
    record = deploy(env=ENV)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    return record


def test_canary_of_the_live_version_is_a_noop_success(live: DeployRecord) -> None:
    config = load_config(ENV)
    before = aliases(config)
    assert all(not w for _, w in before.values()), before
    record = deploy(env=ENV, canary_percent=10, bake_s=30)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    # Same tree, same digest: every version is reused and is the one the alias serves.
    assert record.image_digest == live.image_digest
    assert record.message.startswith("nothing to shift: "), record.message
    assert "already live" in record.message
    assert aliases(config) == before
    assert not any(m.alias_moved for m in record.functions.values())
    steps = {s.name: s for s in record.steps}
    assert steps["shift traffic"].status == "skipped"
    assert steps["bake"].status == steps["full shift"].status == "skipped"
    # Smoked through the alias for evidence: the live versions answered.
    gates = {g.gate: g for g in record.gates}
    assert {"smoke", "log scan", "ground truth"} <= set(gates) and "bake" not in gates
    assert all(g.status.value == "passed" for g in record.gates)
    stored = Ledger().get(record.deploy_id)
    assert stored is not None and stored.message == record.message


def test_healthy_canary_with_enough_traffic_is_promoted(
    live: DeployRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new digest (same code) so that new versions are published and the canary splits.
    dockerfile = tmp_path / "Dockerfile"
    original = (REPO_ROOT / "service" / "Dockerfile").read_text()
    dockerfile.write_text(original + f"\nLABEL dev.gangway.canary-test={uuid.uuid4().hex}\n")
    monkeypatch.setenv("GANGWAY_SERVICE__BUILD__DOCKERFILE", str(dockerfile))
    # At 90 %, about 7 of ~8 synthetic invokes in 6 s run the new version: P(fewer than 3) is
    # about 2e-6. A small minimum and interval keep the test short.
    monkeypatch.setenv(DEPLOY + "MIN_CANARY_INVOCATIONS", "3")
    monkeypatch.setenv(DEPLOY + "BAKE_INVOKE_INTERVAL_S", "0.1")
    # The comparison with stable passes a clean canary once its own one-sided 95 % bound
    # z^2 / (n + z^2) is within the margin: 52 invocations at the default 5 pp; at 50 pp, 3
    # (0.474). The statistics' own rows are in tests/faults/test_canary.py.
    monkeypatch.setenv(DEPLOY + "NONINFERIORITY_MARGIN", "0.5")
    config = load_config(ENV)
    record = deploy(env=ENV, canary_percent=90, bake_s=6)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    assert record.image_digest != live.image_digest
    bake = next(g for g in record.gates if g.gate == "bake")
    checks = {c.name: c for c in bake.checks}
    assert all(c.ok for c in bake.checks), checks
    evidence = checks["canary error rate"].evidence
    invocations = sum(e["invocations"] for e in evidence.values())
    reached = sum(e["synthetic_new"] for e in evidence.values())
    assert invocations >= 3 and invocations >= reached >= 1, evidence
    assert sum(e["errors"] for e in evidence.values()) == 0
    # Only the bake window counts: the 7 smoke invokes of the new versions are not in it.
    assert invocations == sum(e["logged"] for e in evidence.values()) == reached, evidence
    assert checks["canary traffic"].found == f"{invocations} canary invocations"
    comparison = checks["canary vs stable error rate"].evidence
    assert comparison["decision"] == "no worse" and comparison["canary"]["errors"] == 0
    stable = sum(e["stable_invocations"] for e in evidence.values())
    assert comparison["stable"]["invocations"] == stable >= sum(
        e["synthetic_old"] for e in evidence.values()
    ), evidence
    after = aliases(config)
    assert all(after[k] == (m.version_after, {}) for k, m in record.functions.items()), after
    assert [s.name for s in record.steps][-2:] == ["bake", "full shift"]


def test_window_count_waits_for_known_invokes_and_reports_the_unseen(stack: object) -> None:
    # A log delivery slower than the wait must not read as a quiet canary: the request ids
    # known to have run the version come back as unseen, after a bounded wait.
    config = load_config(ENV)
    fn = config.functions["ticker_fetcher"]
    settle(config)
    version = lambda_read.read_alias(config, fn.name).version
    since = int(time.time() * 1000)
    outcome = smoke_invoke(
        config,
        next(c for c in config.smoke if c.function == "ticker_fetcher"),
        version,
        "window-test",
    )
    assert outcome.ok and outcome.request_id, outcome.result
    began = time.monotonic()
    count = logs_scan.count_window(
        config, fn.name, version, since, request_ids=[outcome.request_id, "never-sent"], wait_s=2
    )
    waited = time.monotonic() - began
    assert count.invocations == {outcome.request_id} and not count.errored
    assert count.unseen == ("never-sent",) and 2 <= waited < 10, waited
    # Nothing before `since` is counted: a window opened after the invoke is empty.
    later = logs_scan.count_window(config, fn.name, version, int(time.time() * 1000))
    assert not later.invocations and not later.unseen
