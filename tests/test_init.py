"""`gangway init` as a user runs it: a process in the service's folder, files read back.

The SAM example (examples/price-alert) is copied to a temporary folder first; the reading of
templates and Dockerfiles is also checked directly on small documents (pure functions).
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT, load_config
from gangway.errors import ConfigError
from gangway.sam_template import dockerfile_cmd, function_key, load_template
from gangway.scaffold import add_events, draft_from_template
from gangway.scaffold_files import render_env, render_service

EXAMPLE = REPO_ROOT / "examples" / "price-alert"
TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Run:
    """One finished `gangway init` process."""

    code: int
    out: str
    err: str


def gangway_init(cwd: Path, *args: str) -> Run:
    """`gangway init ARGS` in cwd, stdin not a terminal, gangway from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("GANGWAY_PROJECT", None)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "init", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert TRACEBACK not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def read(path: Path) -> dict:
    return tomllib.loads(path.read_text())


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the price-alert example, as a user's checkout would hold it."""
    target = tmp_path / "price-alert"
    shutil.copytree(EXAMPLE, target)
    return target


def test_init_writes_what_the_sam_template_says(example: Path) -> None:
    run = gangway_init(example)
    assert run.code == 0, run.err
    assert "wrote deployments/service.toml" in run.out and "wrote deployments/dev.toml" in run.out
    service = read(example / "deployments" / "service.toml")
    assert service["service"] == {
        "name": "price-alert",
        "build": {"context": "src", "dockerfile": "Dockerfile", "repository": "price-alert"},
    }
    assert "migrations" not in service["service"]
    assert service["functions"] == {
        "price_alert": {
            "handler": "app.lambda_handler",  # the Dockerfile's CMD
            "required_env": ["ALERT_CURRENCY", "TZ"],
            "timeout": 10,  # Globals.Function
            "memory": 256,
            "architecture": "x86_64",
        }
    }
    assert service["smoke"] == [
        {"name": "alert", "function": "price_alert", "event_file": "events/alert.json"},
        {"name": "quiet", "function": "price_alert", "event_file": "events/quiet.json"},
    ]
    assert "# expect = " in (example / "deployments" / "service.toml").read_text()

    dev = read(example / "deployments" / "dev.toml")
    assert dev["environment"] == {
        "name": "dev",
        "alias": "live",
        "registry": "127.0.0.1:5000",
        "aws": {"region": "ap-southeast-1", "endpoint_url": "http://127.0.0.1:4566"},
    }
    assert dev["service"] == {"build": {"network": "host"}}
    assert dev["function_env"] == {"TZ": "UTC"}
    assert dev["functions"] == {"price_alert": {"env": {"ALERT_CURRENCY": "USD"}}}
    assert "src/Dockerfile line 8 (CMD)" in run.out and "price-alert" in run.out
    assert "export" not in run.out  # every value was a literal

    # needs lead's optional database/bucket schema
    config = load_config("dev", example / "deployments", root=example)
    fn = config.functions["price_alert"]
    assert fn.name == "price-alert-dev-price-alert" and fn.spec.handler == "app.lambda_handler"
    assert fn.env_plain() == {"TZ": "UTC", "ALERT_CURRENCY": "USD"}
    alert = next(case for case in config.smoke if case.name == "alert")
    assert alert.event["note"] is None and alert.event["request_id"] == "{correlation_id}"


def test_init_refuses_to_overwrite_without_force(example: Path) -> None:
    assert gangway_init(example).code == 0
    service = example / "deployments" / "service.toml"
    service.write_text("# edited by hand\n")
    run = gangway_init(example)
    assert run.code == 2
    assert "would overwrite existing configuration" in run.err and "--force" in run.err
    assert service.read_text() == "# edited by hand\n"
    forced = gangway_init(example, "--force", "--name", "alerts")
    assert forced.code == 0, forced.err
    assert read(service)["service"]["name"] == "alerts"


def test_init_from_flags_without_a_template(tmp_path: Path) -> None:
    project = tmp_path / "svc"
    (project / "code" / "events").mkdir(parents=True)
    (project / "code" / "Dockerfile").write_text('FROM base\nCMD ["main.handle"]\n')
    (project / "code" / "events" / "ping.json").write_text('{"ping": null}')
    run = gangway_init(
        tmp_path,
        "--project",
        str(project),
        "--env",
        "staging",
        "--name",
        "pinger",
        "--function",
        "ping",  # handler: the Dockerfile's CMD
        "--function",
        "pong=main.pong",
        "--context",
        "code",
        "--event",
        "pong=code/events/ping.json",
    )
    assert run.code == 0, run.err
    service = read(project / "deployments" / "service.toml")
    assert service["service"]["build"] == {
        "context": "code",
        "dockerfile": "Dockerfile",
        "repository": "pinger",
    }
    assert service["functions"]["ping"]["handler"] == "main.handle"
    assert service["functions"]["pong"]["handler"] == "main.pong"
    assert service["functions"]["pong"]["timeout"] == 30  # gangway's default, said in the output
    assert service["smoke"] == [
        {"name": "ping", "function": "pong", "event_file": "code/events/ping.json"}
    ]
    staging = read(project / "deployments" / "staging.toml")
    assert staging["environment"]["name"] == "staging" and "database" not in staging["environment"]
    assert "gangway's defaults" in run.out

    # needs lead's optional database/bucket schema
    config = load_config("staging", project / "deployments", root=project)
    assert config.smoke[0].event == {"ping": None}


def test_on_a_terminal_missing_answers_are_asked(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    main, terminal = pty.openpty()
    os.write(main, b"quizzer\n\n\nquiz=app.quiz.handler\n")
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "init", "--project", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=terminal,
        capture_output=True,
        text=True,
        timeout=60,
    )
    os.close(main)
    os.close(terminal)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the service's name [" in done.stdout and "the docker build context [.]" in done.stdout
    service = read(tmp_path / "deployments" / "service.toml")
    assert service["service"]["name"] == "quizzer"
    assert service["service"]["build"]["context"] == "."
    assert service["functions"]["quiz"]["handler"] == "app.quiz.handler"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--function", "api=app.handler", "--context", "."), "--name"),
        (("--name", "svc", "--context", "."), "--function KEY=HANDLER"),
        (("--name", "svc", "--function", "api=app.handler"), "--context"),
        (("--name", "svc", "--function", "api", "--context", "."), "--function api=HANDLER"),
    ],
    ids=["name", "function", "context", "handler"],
)
def test_a_missing_answer_off_a_terminal_is_exit_2_naming_the_flag(
    tmp_path: Path, args: tuple[str, ...], flag: str
) -> None:
    if flag != "--context":  # without a Dockerfile in the project, the context is a question
        (tmp_path / "Dockerfile").write_text("FROM base\n")  # no CMD to read a handler from
    run = gangway_init(tmp_path, *args)
    assert run.code == 2, run.out + run.err
    assert f"pass {flag}" in run.err and "not a terminal" in run.err
    assert not (tmp_path / "deployments").exists()


def test_init_refuses_a_cmd_that_is_not_a_handler(example: Path) -> None:
    dockerfile = example / "src" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace('["app.lambda_handler"]', '["app"]'))
    run = gangway_init(example)
    assert run.code == 2
    assert "src/Dockerfile line 8 (CMD)" in run.err and "--function price_alert=" in run.err


TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: beta}
  Token: {Type: String, NoEcho: true}
Globals:
  Function:
    Timeout: !Ref TimeoutParam
    MemorySize: 1024
    Environment:
      Variables: {SHARED: "1", STAGE: !Ref Stage}
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      FunctionName: !Sub "${AWS::StackName}-ingest"
      Architectures: [arm64]
      ImageConfig: {Command: ["app.ingest.handler"]}
      Environment:
        Variables:
          TOKEN: !Ref Token
          TABLE: {"Fn::GetAtt": [Table, Arn]}
          DEBUG: false
    Metadata: {Dockerfile: Dockerfile, DockerContext: .}
  HTTPApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      FunctionName: exact-name
      Timeout: 5
    Metadata: {Dockerfile: Dockerfile, DockerContext: .}
  ZipFunction:
    Type: AWS::Serverless::Function
    Properties: {Runtime: python3.12, Handler: app.handler, CodeUri: src/}
  Reports:
    Type: AWS::S3::Bucket
  Db:
    Type: AWS::RDS::DBInstance
"""


def test_a_template_with_intrinsics_reads_without_crashing(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "Dockerfile").write_text(
        'FROM base AS build\nCMD ["app.api.handler"]\n# a comment\nFROM build\nRUN true \\\n'
        "  && echo done\n"
    )
    (tmp_path / "events").mkdir()
    for name in ("ingest-ok.json", "http_api_get.json", "unknown.json"):
        (tmp_path / "events" / name).write_text('{"x": null}')
    (tmp_path / "events" / "http_api_list.json").write_text(json.dumps([1]))
    draft = draft_from_template(tmp_path, load_template(tmp_path / "template.yaml"), "dev", "demo")
    add_events(tmp_path, draft, [(None, p) for p in sorted((tmp_path / "events").glob("*.json"))])

    ingest, api = draft.functions
    assert (ingest.key, ingest.handler, ingest.architecture) == (
        "ingest",
        "app.ingest.handler",
        "arm64",
    )
    assert ingest.timeout == 30 and ingest.memory == 1024 and ingest.name is None
    assert ingest.env == {
        "DEBUG": "false",
        "TABLE": "${GANGWAY_DEV_TABLE}",
        "TOKEN": "${GANGWAY_DEV_TOKEN}",
    }
    assert draft.shared_env == {"SHARED": "1", "STAGE": "beta"}
    assert ingest.required_env == ("DEBUG", "SHARED", "STAGE", "TABLE", "TOKEN")
    assert (api.key, api.handler, api.timeout, api.name) == (
        "http_api",
        "app.api.handler",
        5,
        "exact-name",
    )
    assert set(draft.exports) == {"GANGWAY_DEV_TOKEN", "GANGWAY_DEV_TABLE"}
    notes = "\n".join(draft.notes)
    assert 'IngestFunction.Timeout: Ref "TimeoutParam" is not a literal number' in notes
    assert "ZipFunction: PackageType is Zip" in notes and "unknown.json skipped" in notes
    assert "events/http_api_list.json skipped: not a JSON object" in notes
    assert [(c.name, c.function) for c in draft.smoke] == [
        ("http_api_get", "http_api"),
        ("ingest-ok", "ingest"),
    ]
    service, env = render_service(draft), render_env(draft, "dev")
    assert tomllib.loads(service)["functions"]["http_api"]["name"] == "exact-name"
    assert "# bucket = " in env and "# [environment.database]" in env
    assert "bucket" not in tomllib.loads(env)["environment"]


@pytest.mark.parametrize(
    ("dockerfile", "handler"),
    [
        ('FROM x\nCMD ["a.b"]\nCMD ["c.d", "ignored"]\n', "c.d"),
        ("FROM x\nCMD   app.handler --flag\n", "app.handler"),
        ('FROM x AS b\nCMD ["a.b"]\nFROM python:3.11\n', None),
        ('FROM x AS b\nCMD ["a.b"]\nFROM b AS c\nFROM c\n', "a.b"),
        ('FROM x\nCMD [ \\\n  "split.handler" \\\n ]\n', "split.handler"),
        ("FROM x\n", None),
    ],
)
def test_the_handler_is_the_final_stage_cmd(dockerfile: str, handler: str | None) -> None:
    cmd = dockerfile_cmd(dockerfile)
    assert (cmd.handler if cmd else None) == handler


def test_function_keys_and_template_errors(tmp_path: Path) -> None:
    assert [function_key(n) for n in ("PriceAlertFunction", "HTTPApiFunction", "Function")] == [
        "price_alert",
        "http_api",
        "function",
    ]
    (tmp_path / "template.yaml").write_text("Resources: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_template(tmp_path / "template.yaml")


def test_functions_built_from_different_dockerfiles_are_refused(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  AFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {PackageType: Image}\n    Metadata: {DockerContext: a}\n"
        "  BFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {PackageType: Image}\n    Metadata: {DockerContext: b}\n"
    )
    run = gangway_init(tmp_path, "--name", "two")
    assert run.code == 2
    assert "different Dockerfiles or contexts" in run.err and "AFunction: a/Dockerfile" in run.err
    assert not (tmp_path / "deployments").exists()
