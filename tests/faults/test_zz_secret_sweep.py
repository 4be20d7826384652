"""Runs last in the matrix: no secret value in any log, artifact or ledger record of the run.

Each row already scanned its own output and record. This sweep reads everything the run left
where a user or a later reader would look: every ledger record written since the matrix
started, the Prefect artifacts and logs of those records' flow runs (from the Prefect API),
and gangway's own log files. It searches for the database password, the other function
secrets and the AWS secret access key.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)

from gangway.config import gangway_home, load_config
from rehearsal import fault_matrix
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, secret_values

pytestmark = pytest.mark.stack

PAGE = 200


def test_no_secret_in_any_log_artifact_or_ledger_record(matrix_started: float) -> None:
    since = datetime.fromtimestamp(matrix_started, UTC)
    secrets = secret_values(load_config(FAULTS_ENV))
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "") in secrets, "scan for the AWS key too"
    records = [
        r
        for r in Ledger().recent(None, limit=100_000)
        if r.started_at.replace(tzinfo=r.started_at.tzinfo or UTC) >= since
    ]
    texts: dict[str, list[str]] = {"ledger records": [r.model_dump_json() for r in records]}
    runs = sorted({UUID(r.flow_run_id) for r in records if r.flow_run_id})
    texts["prefect artifacts"], texts["prefect logs"] = [], []
    with get_client(sync_client=True) as client:
        for start in range(0, len(runs), 50):
            chunk = runs[start : start + 50]
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=chunk))
            )
            texts["prefect artifacts"] += [f"{a.key} {a.description} {a.data}" for a in artifacts]
            offset = 0
            while True:
                logs = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=chunk)),
                    limit=PAGE,
                    offset=offset,
                )
                texts["prefect logs"] += [log.message for log in logs]
                if len(logs) < PAGE:
                    break
                offset += PAGE
    logs_dir = gangway_home() / "logs"
    texts["gangway log files"] = [
        p.read_text(errors="replace")
        for p in sorted(logs_dir.glob("*"))
        if p.is_file() and p.stat().st_mtime >= matrix_started
    ]
    found = [
        f"{source}[{i}]"
        for source, items in texts.items()
        for i, text in enumerate(items)
        for secret in secrets
        if secret in text
    ]
    fault_matrix.save_sweep({k: len(v) for k, v in texts.items()}, found)
    assert records and texts["prefect logs"], "the sweep found nothing to scan"
    assert not found, f"secret values found in: {found[:20]}"
