"""The handler that will really run: the in-image gate judges the function's ImageConfig.Command,
else the image's CMD, not only configuration's handler.

Real images built FROM the rehearsal base image, real functions on the moto bridge; a wrong CMD
passed the gate before and was caught only by smoke, after traffic had moved.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker as docker_sdk
import pytest

from gangway.config import DeployConfig, FunctionSpec, ResolvedFunction, SmokeCase
from gangway.dockerfile import last_stage_cmd
from gangway.evidence import Check, GateResult, Status
from rehearsal.base_image import BASE_IMAGE
from rehearsal.lambda_waits import wait_active, wait_updated
from tasks import lambda_read
from tasks.aws import client as aws_client
from tasks.image_build import BuiltImage
from tasks.image_gate import image_gate
from tasks.smoke_check import validate_response

APP = """
def handler(event, context):
    return {"ok": True}


def other(event, context):
    return {"other": True}
"""
COPY = "COPY app/ ${LAMBDA_TASK_ROOT}/app/"

Build = Callable[..., tuple[DeployConfig, str]]
stack = pytest.mark.stack


def _function(key: str, handler: str, name: str) -> ResolvedFunction:
    return ResolvedFunction(
        key=key, name=name, spec=FunctionSpec(handler=handler, name=name), env={}
    )


@pytest.fixture
def build(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, tmp_path: Path
) -> Iterator[Build]:
    """Build a small service (app/api.py: handler, other) with the given Dockerfile text; its
    configuration declares the given functions (key → handler) in a project at tmp_path."""
    built: list[str] = []
    (tmp_path / "svc" / "app").mkdir(parents=True)
    (tmp_path / "svc" / "app" / "__init__.py").write_text("")
    (tmp_path / "svc" / "app" / "api.py").write_text(APP)

    def make(dockerfile: str, functions: dict[str, str] | None = None) -> tuple[DeployConfig, str]:
        (tmp_path / "svc" / "Dockerfile").write_text(dockerfile.replace("{base}", BASE_IMAGE))
        tag = f"gangway-test/cmd:{uuid.uuid4().hex[:12]}"
        docker.images.build(path=str(tmp_path / "svc"), tag=tag, rm=True, forcerm=True)
        built.append(tag)
        spec = dev_config.service.build.model_copy(
            update={"context": Path("svc"), "dockerfile": "Dockerfile", "deps_dockerfile": None}
        )
        declared = functions or {"api": "app.api.handler"}
        config = dev_config.model_copy(
            update={
                "root": tmp_path,
                "service": dev_config.service.model_copy(update={"build": spec}),
                "functions": {
                    key: _function(key, handler, f"cmd-test-{key}")
                    for key, handler in declared.items()
                },
            }
        )
        return config, tag

    yield make
    for tag in built:
        docker.images.remove(tag, force=True)


def _checks(result: GateResult) -> dict[str, Check]:
    return {c.name: c for c in result.checks}


# ------------------------------------------------------------------------- the Dockerfile text


def test_dockerfile_cmd_is_the_last_stage_s_across_continuations_and_stage_chains() -> None:
    multi = (
        'FROM base AS build\nCMD ["app.build.handler"]\n'
        "FROM other\n# a comment\nRUN true \\\n  && true\n"
        'CMD [ \\\n  "app.api.handler" ]\n'
    )
    located = last_stage_cmd(multi)
    assert (located.line, located.command, located.json_form) == (7, ("app.api.handler",), True)
    chained = last_stage_cmd('FROM base AS build\nCMD ["app.x.h"]\nFROM build\nRUN true\n')
    assert (located := chained).line == 2 and located.command == ("app.x.h",)
    inherited = last_stage_cmd('FROM base AS build\nCMD ["app.x.h"]\nFROM base2\n')
    assert inherited.line is None and inherited.base == "base2"
    shell = last_stage_cmd("FROM base\nCMD app.api.handler\n")
    assert shell.command == ("/bin/sh", "-c", "app.api.handler") and not shell.json_form
    backtick = last_stage_cmd('# escape=`\nFROM base\nCMD ["app.a.h", `\n "x"]\n')
    assert (backtick.line, backtick.command) == (3, ("app.a.h", "x"))


# -------------------------------------------------------------------- (a) a missing function


@stack
def test_cmd_naming_a_function_missing_from_its_module_blocks_naming_the_dockerfile_line(
    docker: docker_sdk.DockerClient,
    build: Build,
) -> None:
    config, image = build(
        'FROM {base} AS first\nCMD ["app.api.handler"]\n'
        f"FROM {{base}}\n{COPY}\n"
        'CMD [ \\\n  "app.api.missing" ]\n'
    )
    for live in (None, {"api": {}}):  # no live info; live, without a command override
        result = image_gate(docker, config, image, image_configs=live)
        assert result.status is Status.FAILED
        failed = {c.name: c for c in result.failures}
        assert set(failed) == {"effective handler api", "import api (app.api.missing)"}
        effective = failed["effective handler api"]
        assert effective.expected == "app.api.handler (functions.api.handler)"
        assert effective.found.startswith("app.api.missing from the image's CMD (svc/Dockerfile:5)")
        assert 'set CMD ["app.api.handler"] at svc/Dockerfile:5' in effective.remedy
        missing = failed["import api (app.api.missing)"]
        assert missing.found == "app.api.missing is missing in the image"
        assert "svc/Dockerfile:5" in missing.remedy


# ------------------------------------------------------------------ (b) a different handler


@stack
def test_cmd_naming_another_handler_blocks_although_it_imports(
    docker: docker_sdk.DockerClient, build: Build
) -> None:
    config, image = build(f'FROM {{base}}\n{COPY}\nCMD ["app.api.other"]\n')
    result = image_gate(docker, config, image)
    checks = _checks(result)
    [failure] = result.failures
    assert failure.name == "effective handler api"
    assert failure.found == (
        "app.api.other from the image's CMD (svc/Dockerfile:3) (no live function info: judged "
        "against the image's CMD alone)"
    )
    assert failure.evidence["basis"].startswith("no live function info")
    # The gate imported what will run, not configuration's handler.
    assert checks["import api (app.api.other)"].ok
    assert "import api (app.api.handler)" not in checks


@stack
def test_shell_form_inherited_and_missing_cmd_block_with_their_fix(
    docker: docker_sdk.DockerClient, build: Build
) -> None:
    config, image = build(f"FROM {{base}}\n{COPY}\nCMD app.api.handler\n")
    [failure] = image_gate(docker, config, image).failures
    assert failure.found.startswith("/bin/sh from the image's CMD in shell form (svc/Dockerfile:3)")
    assert failure.remedy.startswith('use the JSON-array form set CMD ["app.api.handler"]')

    config, image = build(f"FROM {{base}}\n{COPY}\n")
    failed = {c.name: c for c in image_gate(docker, config, image).failures}
    assert set(failed) == {"effective handler api", "import api (app.handler)"}
    failure = failed["effective handler api"]
    assert failure.found.startswith("app.handler from the image's CMD (inherited from the base")
    assert 'add CMD ["app.api.handler"] to the last stage of svc/Dockerfile' in failure.remedy
    assert "inherited from the base image" in failed["import api (app.handler)"].remedy

    # A CMD emptied in the last stage: nothing to run unless the function overrides it.
    config, image = build(f"FROM {{base}}\n{COPY}\nCMD []\n")
    result = image_gate(docker, config, image, image_configs={"api": {}})
    [failure] = result.failures
    assert failure.found == (
        "nothing to run: no CMD in the image and no ImageConfig.Command on the function"
    )
    assert "svc/Dockerfile:3" in failure.remedy and "ImageConfig.Command" in failure.remedy


# ------------------------------------------------------ (c) the function's command override


@pytest.fixture
def live_function(dev_config: DeployConfig) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Create a real function on the moto bridge (unique name) with the given ImageConfig."""
    lam = aws_client(dev_config, "lambda")
    seeded = lam.get_function(FunctionName=dev_config.functions["api"].name)
    names: list[str] = []

    def create(image_config: dict[str, Any]) -> str:
        name = f"gangway-cmd-test-{uuid.uuid4().hex[:8]}"
        lam.create_function(
            FunctionName=name,
            PackageType="Image",
            Code={"ImageUri": seeded["Code"]["ImageUri"]},
            ImageConfig=image_config,
            Role=seeded["Configuration"]["Role"],
            Timeout=10,
            MemorySize=256,
        )
        names.append(name)
        wait_active(lam, name)  # a new function is Pending for a moment: updates are refused
        return name

    yield create
    for name in names:
        lam.delete_function(FunctionName=name)


def _live_image_config(config: DeployConfig, name: str) -> dict[str, Any]:
    conf = lambda_read.get_function(aws_client(config, "lambda"), name)["Configuration"]
    return lambda_read.image_config(conf)


@stack
def test_function_command_override_wins_over_the_image_cmd(
    docker: docker_sdk.DockerClient, build: Build, live_function: Callable[[dict[str, Any]], str]
) -> None:
    config, image = build(f'FROM {{base}}\n{COPY}\nCMD ["app.api.other"]\n')
    name = live_function({"Command": ["app.api.handler"]})
    fn = config.functions["api"].model_copy(update={"name": name})
    config = config.model_copy(update={"functions": {"api": fn}})
    live = {"api": _live_image_config(config, name)}
    assert live["api"]["Command"] == ["app.api.handler"]

    result = image_gate(docker, config, image, image_configs=live)
    assert result.status is Status.PASSED, result.summary()
    checks = _checks(result)
    assert checks["effective handler api"].found == (
        "app.api.handler from the function's ImageConfig.Command"
    )
    assert checks["import api (app.api.handler)"].ok

    aws_client(config, "lambda").update_function_configuration(
        FunctionName=name, ImageConfig={"Command": ["app.api.other"]}
    )
    wait_updated(aws_client(config, "lambda"), name)  # the next update would be refused
    live = {"api": _live_image_config(config, name)}
    result = image_gate(docker, config, image, image_configs=live)
    [failure] = result.failures
    assert failure.found == "app.api.other from the function's ImageConfig.Command"
    assert f'set ImageConfig.Command = ["app.api.handler"] on function {name}' in failure.remedy
    assert "Dockerfile" not in failure.remedy

    # A function that replaces the image's entry point runs something the gate did not prove.
    aws_client(config, "lambda").update_function_configuration(
        FunctionName=name,
        ImageConfig={"Command": ["app.api.handler"], "EntryPoint": ["/bin/true"]},
    )
    live = {"api": _live_image_config(config, name)}
    [failure] = image_gate(docker, config, image, image_configs=live).failures
    assert failure.name == "entry point"
    assert f"{name}'s ImageConfig.EntryPoint ['/bin/true']" in failure.found


# --------------------------------------------------------------------------- (d) it passes


@stack
def test_correct_cmd_passes_and_the_evidence_names_its_source(
    docker: docker_sdk.DockerClient, build: Build
) -> None:
    config, image = build(f'FROM {{base}}\n{COPY}\nCMD ["app.api.handler"]\n')
    result = image_gate(docker, config, image)
    assert result.status is Status.PASSED, result.summary()
    check = _checks(result)["effective handler api"]
    assert check.found.startswith("app.api.handler from the image's CMD (svc/Dockerfile:3)")
    assert check.evidence["source"] == "the image's CMD (svc/Dockerfile:3)"
    assert _checks(result)["entry point"].found.startswith(
        "the image's ENTRYPOINT ['/lambda-entrypoint.sh']"
    )


@stack
def test_multi_function_image_without_live_info_defers_only_declared_overrides(
    docker: docker_sdk.DockerClient,
    build: Build,
) -> None:
    """Without live function info (`gangway gate`), a function that declares
    command_override is left to the deploy; one that does not must be served by the CMD."""
    functions = {"api": "app.api.handler", "other": "app.api.other"}
    config, image = build(f'FROM {{base}}\n{COPY}\nCMD ["app.api.handler"]\n', functions)
    [failure] = image_gate(docker, config, image).failures
    assert failure.name == "effective handler other"
    assert "app.api.handler from the image's CMD (svc/Dockerfile:3)" in failure.found
    other = config.functions["other"]
    declared = other.model_copy(
        update={"spec": other.spec.model_copy(update={"command_override": True})}
    )
    config = config.model_copy(update={"functions": {**config.functions, "other": declared}})
    result = image_gate(docker, config, image)
    assert result.status is Status.PASSED, result.summary()
    found = _checks(result)["effective handler other"].found
    assert "functions.other.command_override" in found and "checked at deploy time" in found
    assert _checks(result)["import other (app.api.other)"].ok
    # At deploy time the live functions are known: without an override, "other" runs the CMD.
    result = image_gate(docker, config, image, image_configs={"api": {}, "other": {}})
    [failure] = result.failures
    assert failure.name == "effective handler other"
    assert failure.found == "app.api.handler from the image's CMD (svc/Dockerfile:3)"


@stack
def test_reference_service_passes_with_and_without_the_seeded_functions(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, service_image: BuiltImage
) -> None:
    alone = image_gate(docker, dev_config, service_image.reference)
    assert alone.status is Status.PASSED, alone.summary()
    assert _checks(alone)["effective handler api"].found.startswith(
        "app.api.handler from the image's CMD (service/Dockerfile:"
    )
    live = {
        k: dict(fn.image_config) for k, fn in lambda_read.describe_functions(dev_config).items()
    }
    seeded = image_gate(docker, dev_config, service_image.reference, image_configs=live)
    assert seeded.status is Status.PASSED, seeded.summary()
    effective = [c for c in seeded.checks if c.name.startswith("effective handler ")]
    assert len(effective) == 7
    assert all(c.found.endswith("from the function's ImageConfig.Command") for c in effective)


# ----------------------------------------------------------------------------- smoke's remedy


@pytest.mark.parametrize("error_type", ["Runtime.HandlerNotFound", "Runtime.ImportModuleError"])
def test_smoke_remedy_points_at_where_the_handler_comes_from(error_type: str) -> None:
    case = SmokeCase(name="api", function="api")
    payload = json.dumps({"errorType": error_type, "errorMessage": "no handler"}).encode()
    checks = validate_response(case, 200, "Unhandled", payload, "cid")
    remedy = next(c.remedy for c in checks if c.name == "function error")
    assert "ImageConfig.Command" in remedy and "the image's CMD" in remedy
    assert "functions.api.handler" in remedy
