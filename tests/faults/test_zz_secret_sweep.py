"""Runs last in the matrix: no secret value in any log, artifact or ledger record of the run.

Each row already scanned its own output and record. This sweep reads everything the run left
where a user or a later reader would look: every ledger record written since the matrix
started, the Prefect artifacts and logs of those records' flow runs (from the Prefect API),
and gangway's own log files. The values it looks for do not come from gangway's scrubber
(``known_secrets``): the stack's secrets file, secret-bearing function env values and the IAM
users' secret keys.

A sweep that finds nothing proves nothing by itself, so it first plants a positive control in
each source, a random value the scrubber has never heard of, through the path real values
take (a flow run's logger, a Prefect artifact, a ledger record written through the scrubbing
ledger, a request the AWS endpoint logs), and counts only if it finds every one of them.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

import pytest
from botocore.exceptions import ClientError
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.context import get_run_context

from gangway.config import DeployConfig, gangway_home, load_config
from gangway.record import DeployRecord, Outcome
from rehearsal import fault_matrix
from rehearsal.fault_matrix import Sweep
from tasks.aws import client
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, known_secrets

pytestmark = pytest.mark.stack

PAGE = 200
T = TypeVar("T")
SOURCES = ("ledger records", "prefect artifacts", "prefect logs", "gangway log files")


@flow(name="secret-sweep-control")
def plant_controls(env: str, controls: dict[str, str]) -> str:
    """Put one control into a flow-run log, an artifact and a ledger record, as a deploy would."""
    config = load_config(env)
    run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    get_run_logger().info("gate evidence: %s", controls["prefect logs"])
    create_markdown_artifact(
        key="secret-sweep-control", markdown=f"found `{controls['prefect artifacts']}`"
    )
    now = datetime.now(UTC)
    Ledger(secrets=config.secret_values()).write(
        DeployRecord(
            env=env,
            commit_sha="0" * 40,
            kind="control",
            outcome=Outcome.REFUSED,
            message="secret sweep positive control (not a deploy)",
            notes=[controls["ledger records"]],
            started_at=now,
            finished_at=now,
            flow_run_id=run_id,
        )
    )
    return run_id


def plant_in_log_file(config: DeployConfig, control: str) -> None:
    """A request naming the control: the AWS endpoint's access log records its path."""
    try:
        client(config, "lambda").get_function(FunctionName=control)
    except ClientError:
        pass  # not found, as intended: only the request line matters


def _paged(read: Callable[[int], list[T]]) -> list[T]:
    """Every item of a paged Prefect read (offset → one page)."""
    items: list[T] = []
    while True:
        page = read(len(items))
        items += page
        if len(page) < PAGE:
            return items


def gather(since: float) -> dict[str, list[str]]:
    """Every text of the run, per source, found the way a later reader would find it."""
    started = datetime.fromtimestamp(since, UTC)
    records = [
        r
        for r in Ledger().recent(None, limit=100_000)
        if r.started_at.replace(tzinfo=r.started_at.tzinfo or UTC) >= started
    ]
    texts: dict[str, list[str]] = {name: [] for name in SOURCES}
    # The folded records and the raw events they come from (a later event may not show).
    ledger = Ledger()
    texts["ledger records"] = [r.model_dump_json() for r in records] + [
        e.model_dump_json() for r in records for e in ledger.events(r.deploy_id)
    ]
    runs = sorted({UUID(r.flow_run_id) for r in records if r.flow_run_id})
    with get_client(sync_client=True) as prefect:
        for start in range(0, len(runs), 50):
            chunk = runs[start : start + 50]
            # Both reads are paged: the server answers at most PAGE items per call, and a
            # matrix run leaves more artifacts than that (the planted control found it).
            texts["prefect artifacts"] += [
                f"{a.key} {a.description} {a.data}"
                for a in _paged(
                    lambda offset, ids=chunk: prefect.read_artifacts(
                        artifact_filter=ArtifactFilter(
                            flow_run_id=ArtifactFilterFlowRunId(any_=ids)
                        ),
                        limit=PAGE,
                        offset=offset,
                    )
                )
            ]
            texts["prefect logs"] += [
                log.message
                for log in _paged(
                    lambda offset, ids=chunk: prefect.read_logs(
                        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)),
                        limit=PAGE,
                        offset=offset,
                    )
                )
            ]
    texts["gangway log files"] = [
        p.read_text(errors="replace")
        for p in sorted((gangway_home() / "logs").glob("*"))
        if p.is_file() and p.stat().st_mtime >= since
    ]
    return texts


def test_no_secret_in_any_log_artifact_or_ledger_record(matrix_started: float) -> None:
    config = load_config(FAULTS_ENV)
    looked_for = known_secrets(config)
    scrubbed = set(config.secret_values())
    controls = {source: f"gwcontrol{secrets.token_hex(12)}" for source in SOURCES}
    assert not scrubbed & set(controls.values()), "a control the scrubber knows proves nothing"
    plant_in_log_file(config, controls["gangway log files"])
    plant_controls(FAULTS_ENV, controls)

    deadline = time.monotonic() + 30  # Prefect ships logs in batches; give them time to land
    while True:
        texts = gather(matrix_started)
        found_controls = {
            source
            for source, control in controls.items()
            if any(control in text for text in texts[source])
        }
        if len(found_controls) == len(controls) or time.monotonic() > deadline:
            break
        time.sleep(1)
    found = [
        f"{source}[{i}]"
        for source, items in texts.items()
        for i, text in enumerate(items)
        for secret in looked_for
        if secret in text
    ]
    missed = sorted(set(controls) - found_controls)
    fault_matrix.save_sweep(
        Sweep(
            scanned={k: len(v) for k, v in texts.items()},
            found=found,
            controls_planted=len(controls),
            controls_found=len(found_controls),
            missed_controls=missed,
        )
    )
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "") in looked_for, "look for the AWS key too"
    assert not missed, f"the sweep cannot see planted values in: {missed}"
    assert not found, f"secret values found in: {found[:20]}"
