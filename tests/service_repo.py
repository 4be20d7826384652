"""A small service in its own git repository, for the tests that need a second service.

One function, no database, no bucket, no ground truth, logs nothing: made by make_service()
in a temporary folder and driven through the CLI in its own process, as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gangway.config import REPO_ROOT

SERVICE = "gw-echo"
KEY = "echo"

DOCKERFILE = """\
FROM gangway-rehearsal/lambda-python:3.11
COPY app.py ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]
"""
APP = """\
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"echo": event, "ok": True})}
"""
SERVICE_TOML = f"""\
[service]
name = "{SERVICE}"

[service.build]
context = "src"
repository = "{SERVICE}"

[functions.{KEY}]
handler = "app.handler"
required_env = ["TZ"]
timeout = 10
memory = 256
app_logs = false

[[smoke]]
name = "echo answers"
function = "{KEY}"
event = {{ hello = "{{correlation_id}}" }}
status_code = 200
expect = {{ ok = true }}
"""
DEV_TOML = """\
[environment]
name = "dev"
registry = "127.0.0.1:5000"

[environment.aws]
region = "ap-southeast-1"
endpoint_url = "http://127.0.0.1:4566"

[function_env]
TZ = "UTC"
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def make_service(root: Path) -> Path:
    """A one-function service in its own git repository, with one commit."""
    (root / "src").mkdir(parents=True)
    (root / "deployments").mkdir()
    (root / "src" / "Dockerfile").write_text(DOCKERFILE)
    (root / "src" / "app.py").write_text(APP)
    (root / "deployments" / "service.toml").write_text(SERVICE_TOML)
    (root / "deployments" / "dev.toml").write_text(DEV_TOML)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "echo service")
    return root


def gangway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, from gangway's repository, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})},
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """What to print when an assertion about a run fails."""
    return (
        f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-3000:]}\n"
        f"--- stderr ---\n{done.stderr[-3000:]}"
    )
