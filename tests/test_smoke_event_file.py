"""Smoke events from JSON files: read during validation, nulls kept, `{correlation_id}` replaced.

The loader's refusals are checked through load_config; one test invokes a real function on the
stack with a case whose event comes from a file and reads the request at the boundary (the
botocore request that carries the payload to the Lambda API).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gangway.config import REPO_ROOT, DeployConfig, SmokeCase, load_config
from gangway.errors import ConfigError
from rehearsal.lambda_waits import wait_updated
from tasks.aws import client
from tasks.json_values import substitute
from tasks.registry import PushedImage
from tasks.smoke import smoke_invoke

SECRETS = {
    "GANGWAY_DEV_DB_PASSWORD": "pw-for-tests-1",
    "GANGWAY_DEV_TELEGRAM_TOKEN": "tg-for-tests-1",
    "GANGWAY_DEV_LINE_SECRET": "line-for-tests-1",
}
EVENT = {
    "symbol": "GWSMOKE",
    "note": None,
    "nested": {"reason": None, "ids": [1, None, True, "{correlation_id}"]},
    "request_id": "{correlation_id}",
}
CASE = """
[[smoke]]
name = "from a file"
function = "ticker_fetcher"
event_file = "{path}"
"""


def project_with(tmp_path: Path, path: str, extra: str = "") -> tuple[Path, Path]:
    """(deployments dir, project root) with dev.toml's smoke list set to one event_file case."""
    deployments = tmp_path / "deployments"
    shutil.copytree(REPO_ROOT / "deployments", deployments)
    dev = deployments / "dev.toml"
    dev.write_text(dev.read_text() + CASE.format(path=path) + extra)
    project = tmp_path / "project"
    (project / "events").mkdir(parents=True)
    # The reference service declares its migrations: the project must hold them.
    (project / "migrations").symlink_to(REPO_ROOT / "migrations")
    return deployments, project


def load(deployments: Path, project: Path) -> DeployConfig:
    return load_config("dev", deployments, root=project)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANGWAY_HOME", str(tmp_path / "home"))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)


def test_the_file_becomes_the_event_with_nulls_kept(tmp_path: Path, secrets: None) -> None:
    deployments, project = project_with(tmp_path, "events/nulls.json")
    (project / "events" / "nulls.json").write_text(json.dumps(EVENT))
    (case,) = load(deployments, project).smoke
    assert case.event == EVENT and case.event_file == "events/nulls.json"
    sent = substitute(case.event, "cid-42")
    assert sent["note"] is None and sent["nested"]["reason"] is None
    assert sent["nested"]["ids"] == [1, None, True, "cid-42"]
    assert json.loads(json.dumps(sent))["request_id"] == "cid-42"


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (None, "does not exist"),
        (b"{not json", "is not valid JSON"),
        (b'{"price": NaN}', "is not valid JSON"),
        (b'{"a": "\xff"}', "is not valid JSON"),
        (b"[1, 2]", "does not hold a JSON object"),
        (b'{"pad": "' + b"x" * (256 * 1024) + b'"}', "is too large"),
    ],
    ids=["missing", "not-json", "nan", "not-utf8", "array", "too-big"],
)
def test_a_bad_event_file_is_a_config_error_naming_case_file_and_remedy(
    tmp_path: Path, secrets: None, content: bytes | None, found: str
) -> None:
    deployments, project = project_with(tmp_path, "events/bad.json")
    if content is not None:
        (project / "events" / "bad.json").write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load(deployments, project)
    text = raised.value.render()
    assert found in raised.value.message
    assert "smoke case 'from a file'" in text and "events/bad.json" in text
    assert "smoke.event_file of 'from a file'" in raised.value.remedy


def test_event_and_event_file_together_are_refused(tmp_path: Path, secrets: None) -> None:
    deployments, project = project_with(tmp_path, "events/e.json", "event = { a = 1 }\n")
    (project / "events" / "e.json").write_text("{}")
    with pytest.raises(ConfigError, match="sets both event and event_file"):
        load(deployments, project)


def test_an_event_file_outside_the_project_is_refused(tmp_path: Path, secrets: None) -> None:
    deployments, project = project_with(tmp_path, "../outside.json")
    (tmp_path / "outside.json").write_text("{}")
    with pytest.raises(ConfigError, match="is outside the project"):
        load(deployments, project)


@pytest.mark.stack
def test_an_event_file_reaches_the_function_with_nulls_and_correlation_id(
    stack: object, pushed_image: PushedImage, tmp_path: Path
) -> None:
    deployments, project = project_with(tmp_path, "events/nulls.json")
    (project / "events" / "nulls.json").write_text(json.dumps(EVENT))
    config = load(deployments, project)
    (case,) = config.smoke
    assert isinstance(case, SmokeCase) and case.event["note"] is None

    fn = config.functions["ticker_fetcher"]
    lam = client(config, "lambda", read_timeout=180)
    lam.update_function_code(FunctionName=fn.name, ImageUri=pushed_image.by_digest)
    wait_updated(lam, fn.name)  # a publish during the update would be refused
    version = lam.publish_version(FunctionName=fn.name)["Version"]

    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(json.loads(request.body))  # the bytes the Lambda API receives

    lam.meta.events.register("before-send.lambda.Invoke", capture)
    outcome = smoke_invoke(config, case, version, "gw-file-cid-1", lam=lam)

    assert outcome.ok, outcome.result.checks
    assert outcome.executed_version == version and "symbols" in (outcome.payload or {})
    assert sent == [
        {
            "symbol": "GWSMOKE",
            "note": None,
            "nested": {"reason": None, "ids": [1, None, True, "gw-file-cid-1"]},
            "request_id": "gw-file-cid-1",
        }
    ]
