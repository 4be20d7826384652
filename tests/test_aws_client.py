"""The one AWS client factory (tasks/aws.py): shared clients, and the retry profiles that send
one request per call, measured against an endpoint that never answers (no stack needed).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ReadTimeoutError

from gangway.config import DeployConfig, load_config
from tasks.aws import MAX_ATTEMPTS, client


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DeployConfig]:
    """The staging config (made-up secrets) pointed at an endpoint that accepts connections
    and never answers, with a 1 s invoke timeout."""
    monkeypatch.setenv("GANGWAY_HOME", str(tmp_path))
    for var in ("DB_PASSWORD", "TELEGRAM_TOKEN", "LINE_SECRET"):
        monkeypatch.setenv(f"GANGWAY_STAGING_{var}", f"offline-{var.lower()}")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "offline")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel completes the handshakes; nobody ever reads a request
        monkeypatch.setenv(
            "GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}"
        )
        monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__INVOKE_TIMEOUT_S", "1")
        yield load_config("staging")


def test_one_client_per_service_and_profile_is_shared(silent: DeployConfig) -> None:
    assert client(silent, "lambda") is client(silent, "lambda", profile="standard")
    assert client(silent, "lambda", profile="restore") is not client(silent, "lambda")
    assert client(silent, "lambda", profile="invoke") is not client(silent, "lambda")


def test_an_invoke_is_sent_once_and_bounded_by_the_invoke_timeout(silent: DeployConfig) -> None:
    # A timed-out invoke may have run its handler: botocore must not send it again, which
    # would also stretch the wait to MAX_ATTEMPTS times the bound.
    lam = client(silent, "lambda", profile="invoke")
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        lam.invoke(FunctionName="daily-report-staging-api", Qualifier="live", Payload=b"{}")
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 2, elapsed
    # The standard profile, for contrast, repeats a timed-out read (idempotent reads only).
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client(silent, "lambda", read_timeout=1).get_alias(FunctionName="f", Name="live")
    assert time.monotonic() - started >= MAX_ATTEMPTS - 1
