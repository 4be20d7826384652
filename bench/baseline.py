"""The baseline: the seeds' deploy workflow as a plain sequential script, for side-by-side timing.

Same tools, service and stack as the pipeline, and nothing else: the Docker SDK (build,
one `docker run` import check per handler, push), then for each function in turn
update_function_code by digest, wait until updated, publish_version, update_alias; then one
invoke per smoke case; then a log filter per function, polled until each invoke's REPORT line
has arrived (CloudWatch Logs delivers late on AWS, and on the rehearsal when its ingestion
delay is on: a script that filters once would read nothing and call it clean). The AWS
clients are the pipeline's (tasks.aws.client, and the invoke client configured as
tasks/smoke.py's: same endpoint, timeouts, retry mode). No gangway gate, ledger, lock or
Prefect. It fails loudly when a step fails, so a broken baseline cannot look fast.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import docker
from botocore.config import Config as BotoConfig

from gangway.config import DeployConfig
from tasks.aws import BOTO, client
from tasks.image_build import image_architecture, vendor_requirements
from tasks.smoke import substitute

STAMP_FILE = Path("app") / "build_stamp.py"
# The seeds' build files, as they were before gangway baked the dependencies into an image of
# their own (service/Dockerfile.deps): vendor/ is part of every build's context.
SEEDS_DOCKERFILE = """\
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11
FROM ${BASE_IMAGE}
COPY vendor/ ${LAMBDA_TASK_ROOT}/
COPY app/ ${LAMBDA_TASK_ROOT}/app/
CMD ["app.api.handler"]
"""
SEEDS_DOCKERIGNORE = """\
app/**/__pycache__
app/**/*.pyc
**/.pytest_cache
**/.ruff_cache
tests/
README.md
requirements.txt
"""
FILTER_PATTERN = "?ERROR ?Traceback ?Exception"
POLL_S = 0.5


@dataclass
class BaselineRun:
    """One baseline deploy: its image digest and seconds per phase."""

    digest: str = ""
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The wall time of the whole deploy (the phases run one after another)."""
        return sum(self.phases.values())


def prepare_context(config: DeployConfig, into: Path) -> Path:
    """A scratch copy of the service's build context (vendor/ included) with the seeds' build
    files, to stamp and build."""
    target = into / "service"
    shutil.copytree(
        config.build_context, target, symlinks=True, ignore=shutil.ignore_patterns("vendor")
    )
    # The seeds vendored by hand into vendor/; the same files, from gangway's vendor cache.
    build = config.service.build.model_copy(update={"context": target})
    scratch = config.model_copy(
        update={"service": config.service.model_copy(update={"build": build})}
    )
    vendor_requirements(scratch, image_architecture(config))
    (target / config.service.build.dockerfile).write_text(SEEDS_DOCKERFILE)
    (target / ".dockerignore").write_text(SEEDS_DOCKERIGNORE)
    return target


def _invoke_client(config: DeployConfig) -> Any:
    boto = BOTO.merge(
        BotoConfig(
            read_timeout=config.environment.deploy.invoke_timeout_s,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
    )
    aws = config.environment.aws
    return boto3.session.Session().client(
        "lambda", region_name=aws.region, endpoint_url=aws.endpoint_url, config=boto
    )


def import_each(engine: docker.DockerClient, image: str, config: DeployConfig) -> None:
    """The seeds' import check: one `docker run` per handler, importing it (raises on failure)."""
    for fn in config.functions.values():
        module, attribute = fn.spec.handler.rsplit(".", 1)
        engine.containers.run(
            image,
            entrypoint=["python3", "-c", f"import {module}; {module}.{attribute}"],
            command=[],
            environment=fn.env_plain(),
            network_disabled=True,
            remove=True,
        )


def baseline_deploy(
    engine: docker.DockerClient,
    config: DeployConfig,
    context: Path,
    stamp: str,
    log_wait_s: float = 30.0,
) -> BaselineRun:
    """Deploy context (with a new stamp, so a new digest) to config's functions, sequentially."""
    run = BaselineRun()
    lam = client(config, "lambda")
    logs = client(config, "logs")
    invoker = _invoke_client(config)
    repository = config.image_repository
    tag = f"baseline-{stamp}"

    def phase(name: str, started: float) -> None:
        run.phases[name] = time.monotonic() - started

    started = time.monotonic()
    (context / STAMP_FILE).write_text(f'STAMP = "{stamp}"\n')
    image, _ = engine.images.build(
        path=str(context),
        dockerfile=config.service.build.dockerfile,
        tag=f"{repository}:{tag}",
        buildargs=dict(config.service.build.build_args),
        rm=True,
    )
    phase("build", started)

    started = time.monotonic()
    import_each(engine, image.id, config)
    phase("import check per handler", started)

    started = time.monotonic()
    for event in engine.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"baseline push failed: {event['error']}")
        run.digest = event.get("aux", {}).get("Digest", run.digest)
    if not run.digest:
        raise RuntimeError("baseline push reported no digest")
    phase("push", started)

    started = time.monotonic()
    alias = config.environment.alias
    for fn in config.functions.values():
        lam.update_function_code(FunctionName=fn.name, ImageUri=f"{repository}@{run.digest}")
        lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
        version = lam.publish_version(FunctionName=fn.name)["Version"]
        lam.update_alias(
            FunctionName=fn.name,
            Name=alias,
            FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": {}},
        )
    phase("update, wait, publish, alias", started)

    since_ms = int(time.time() * 1000)
    started = time.monotonic()
    awaited: dict[str, set[str]] = {}
    for case in config.smoke:
        fn = config.functions[case.function]
        event = substitute(case.event, uuid.uuid4().hex)
        response = invoker.invoke(
            FunctionName=fn.name, Qualifier=alias, Payload=json.dumps(event).encode()
        )
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise RuntimeError(f"baseline invoke of {fn.name} failed: {payload[:300]!r}")
        awaited.setdefault(fn.name, set()).add(response["ResponseMetadata"]["RequestId"])
    phase("invoke each", started)

    started = time.monotonic()
    deadline = started + log_wait_s
    for name, request_ids in awaited.items():
        _wait_for_reports(logs, name, since_ms, request_ids, deadline)
        kwargs: dict[str, Any] = {
            "logGroupName": f"/aws/lambda/{name}",
            "startTime": since_ms,
            "filterPattern": FILTER_PATTERN,
        }
        while True:
            page = logs.filter_log_events(**kwargs)
            if not page.get("nextToken") or not page.get("events"):
                break
            kwargs["nextToken"] = page["nextToken"]
    phase("wait for and filter logs", started)
    return run


def _wait_for_reports(
    logs: Any, name: str, since_ms: int, request_ids: set[str], deadline: float
) -> None:
    """Poll the function's log group until every invoke's REPORT line is readable."""
    missing = set(request_ids)
    while True:
        kwargs: dict[str, Any] = {
            "logGroupName": f"/aws/lambda/{name}",
            "startTime": since_ms,
            "filterPattern": "REPORT",
        }
        while missing:
            page = logs.filter_log_events(**kwargs)
            for event in page.get("events", []):
                missing -= {rid for rid in missing if rid in event["message"]}
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"baseline: no REPORT line of {sorted(missing)} in /aws/lambda/{name}"
            )
        time.sleep(POLL_S)
