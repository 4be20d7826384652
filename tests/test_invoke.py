"""boto3 → moto over HTTP → the function's own image under the Lambda RIE, with real logs.

The function runs the pushed reference image; the report worker writes a real row into
MariaDB and a real object into the (moto) bucket, and its log lines land in CloudWatch Logs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gangway.config import DeployConfig
from rehearsal.lambda_waits import wait_updated
from tasks import schema
from tasks.aws import client
from tasks.registry import PushedImage

# Longer than the rehearsal's log ingestion delay (fidelity log_delay_s + log_jitter_s).
INGESTION_S = 15

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def deployed(dev_config: DeployConfig, pushed_image: PushedImage) -> Iterator[dict[str, str]]:
    """Every dev function on the pushed image by digest, as a published version."""
    schema.upgrade(dev_config)
    lam = client(dev_config, "lambda")
    versions = {}
    for fn in dev_config.functions.values():
        lam.update_function_code(FunctionName=fn.name, ImageUri=pushed_image.by_digest)
        wait_updated(lam, fn.name)  # a publish during the update would be refused
        versions[fn.key] = lam.publish_version(FunctionName=fn.name)["Version"]
    yield versions


def test_report_worker_invoke_writes_row_object_and_logs(
    dev_config: DeployConfig, deployed: dict[str, str], pushed_image: PushedImage
) -> None:
    fn = dev_config.functions["report_worker"]
    lam = client(dev_config, "lambda", read_timeout=180)
    config = lam.get_function(FunctionName=fn.name, Qualifier=deployed["report_worker"])
    assert config["Code"]["ImageUri"] == pushed_image.by_digest

    response = lam.invoke(
        FunctionName=fn.name,
        Qualifier=deployed["report_worker"],
        Payload=json.dumps({"symbol": "PTT", "report_date": "2026-11-23"}).encode(),
        LogType="Tail",
    )
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    assert payload["status"] == "ok" and payload["symbol"] == "PTT"
    correlation = payload["correlation_id"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "REPORT RequestId" in tail

    # Ground truth: the row is in the table with its S3 key, the object is in the bucket.
    with schema.engine(dev_config).connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT pdf_s3_key, report_json FROM precomputed_reports "
                "WHERE symbol = 'PTT' AND report_date = '2026-11-23'"
            )
        ).one()
    assert row.pdf_s3_key == payload["pdf_s3_key"] and correlation in row.pdf_s3_key
    assert json.loads(row.report_json)["correlation_id"] == correlation
    head = client(dev_config, "s3").head_object(
        Bucket=dev_config.environment.bucket, Key=row.pdf_s3_key
    )
    assert (
        head["ContentType"] == "application/pdf" and head["ContentLength"] == payload["pdf_bytes"]
    )

    # Observability: the application's own line is in the function's log group, once
    # CloudWatch Logs has ingested it (the rehearsal delays events as Lambda does).
    logs, deadline, events = client(dev_config, "logs"), time.monotonic() + INGESTION_S, []
    while not events and time.monotonic() < deadline:
        events = logs.filter_log_events(
            logGroupName=f"/aws/lambda/{fn.name}", filterPattern=f'"{correlation}"'
        )["events"]
        time.sleep(0 if events else 0.25)
    assert events, "the report worker's application log line did not reach CloudWatch Logs"
    assert any(f"[{deployed['report_worker']}]" in e["logStreamName"] for e in events)


def test_missing_env_var_in_function_config_fails_at_cold_start_naming_it(
    dev_config: DeployConfig, deployed: dict[str, str]
) -> None:
    fn = dev_config.functions["query_tool"]
    lam = client(dev_config, "lambda", read_timeout=120)
    env = {k: v for k, v in fn.env_plain().items() if k != "DB_HOST"}
    lam.update_function_configuration(FunctionName=fn.name, Environment={"Variables": env})
    wait_updated(lam, fn.name)  # until then, invokes run the previous configuration
    try:
        response = lam.invoke(FunctionName=fn.name, Payload=b"{}")
        payload = json.loads(response["Payload"].read())
        assert response.get("FunctionError"), payload
        assert "DB_HOST" in payload["errorMessage"]
        assert fn.env_plain()["DB_PASSWORD"] not in json.dumps(payload)
    finally:
        lam.update_function_configuration(
            FunctionName=fn.name, Environment={"Variables": fn.env_plain()}
        )
        wait_updated(lam, fn.name)
