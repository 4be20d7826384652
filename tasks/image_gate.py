"""The code → runtime boundary, proven inside the built image before anything is pushed.

One container imports the handler each function will really run (its ImageConfig.Command,
else the image's CMD: tasks/effective_handler.py), module AND attribute, with each function's
configured environment and again without it, and reports the working directory, Python
version and CPU architecture; a handler that differs from configuration's blocks. The
incidents this catches: a handler module missing from the image (the seven-day
`handle_webhook` outage), a missing COPY, a start-up that does not validate its settings, a
CMD that names another handler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound
from pydantic import SecretStr
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from gangway.config import DeployConfig, ResolvedFunction
from gangway.errors import DockerError
from gangway.evidence import Check, GateResult, Strength
from gangway.redact import scrub
from tasks.effective_handler import (
    HandlerSource,
    entrypoint_check,
    handler_check,
    image_cmd,
    resolve,
)

PROBE_SOURCE = (Path(__file__).with_name("image_probe.py")).read_text()
MARKER = "GANGWAY_PROBE_RESULT "
TASK_ROOT = "/var/task"
MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def run_probe(
    client: docker.DockerClient,
    image: str,
    functions: list[ResolvedFunction],
    *,
    import_timeout_s: int = 10,
    container_timeout_s: int = 120,
    handlers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run the probe in ONE container of image for the given functions; return its raw report.

    handlers: the handler to import per function key (default: configuration's).
    """
    spec = {
        "timeout": import_timeout_s,
        "handlers": [
            {
                "key": fn.key,
                "handler": (handlers or {}).get(fn.key, fn.spec.handler),
                "env": fn.env_plain(),
            }
            for fn in functions
        ],
    }
    try:
        # No network: a cold start must not depend on I/O, and the probe must not reach prod.
        container = client.containers.create(
            image,
            entrypoint=["python3", "-c", PROBE_SOURCE],
            command=[],
            environment={"GANGWAY_PROBE": json.dumps(spec)},
            network_disabled=True,
            labels={"dev.gangway.role": "image-gate"},
        )
    except ImageNotFound as exc:
        raise DockerError(
            "the image to gate does not exist in the engine",
            expected=image,
            found="no such image",
            remedy="build the image first (the build step) or pull it",
        ) from exc
    try:
        container.start()
        try:
            status = container.wait(timeout=container_timeout_s)
        except (ReadTimeout, RequestsConnectionError) as exc:
            raise DockerError(
                "the in-image import check did not finish",
                expected=f"all handlers imported within {container_timeout_s}s",
                found="still running at the deadline",
                remedy="look for a handler that blocks at import (network, sleep, input)",
            ) from exc
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
    except APIError as exc:
        raise DockerError(
            "the Docker engine refused the in-image check",
            expected=f"a container of {image}",
            found=str(exc)[:500],
            remedy="check the engine (`docker info`)",
        ) from exc
    finally:
        container.remove(force=True)
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise DockerError(
        "the in-image check printed no report",
        expected="python3 in the image PATH running the probe",
        found=f"exit {status.get('StatusCode')}: {(stderr or stdout)[-600:]}",
        remedy="the image needs a python3 on PATH (Lambda Python base images have one)",
    )


def evaluate(
    report: dict[str, Any],
    config: DeployConfig,
    image_arch: str,
    sources: Mapping[str, HandlerSource] | None = None,
) -> list[Check]:
    """Turn the probe's report into checks against what each function declares.

    sources: each function's effective handler (default: configuration's, imported as such).
    """
    declared_python = config.service.build.python
    python_ok = report["python"].startswith(declared_python + ".")
    checks = [
        Check(
            name="working directory",
            ok=report["cwd"] == TASK_ROOT and report.get("task_root") == TASK_ROOT,
            expected=f"WORKDIR and LAMBDA_TASK_ROOT = {TASK_ROOT}",
            found=f"cwd={report['cwd']}, LAMBDA_TASK_ROOT={report.get('task_root')}",
            remedy="build FROM a Lambda base image (it sets both) or set WORKDIR /var/task",
        ),
        Check(
            name="python version",
            ok=python_ok,
            expected=f"Python {declared_python}",
            found=f"Python {report['python']}",
            remedy="use the base image of the declared runtime or fix service.build.python",
        ),
    ]
    machine = MACHINE.get(report["machine"], report["machine"])
    for key, fn in config.functions.items():
        source = (sources or {}).get(key)
        if source is not None:
            checks.append(handler_check(fn, source))
        outcome = report["functions"].get(key)
        wanted = fn.spec.architecture
        arch_ok = machine == wanted and MACHINE.get(image_arch) == wanted
        # Dependencies are vendored for the DECLARED runtime: when the image runs another
        # Python or CPU, their compiled modules fail to import, and every handler import fails
        # with an error that points at a dependency, not at the real cause.
        mismatch = [
            *([] if python_ok else [f"Python {report['python']} vs declared {declared_python}"]),
            *([] if arch_ok else [f"image {machine} vs declared {wanted}"]),
        ]
        checks.append(
            Check(
                name=f"architecture {key}",
                ok=arch_ok,
                expected=fn.spec.architecture,
                found=f"runtime machine {report['machine']}, image architecture {image_arch}",
                remedy="build for the function's architecture or change functions."
                f"{key}.architecture",
            )
        )
        if outcome is None:
            continue  # nothing importable to run: the effective-handler check says so
        checks.append(_import_check(key, fn, outcome["with_env"], "; ".join(mismatch), source))
        # Only meaningful once the handler imports (a missing module already failed above),
        # and for the declared handler: another one's start-up names other variables.
        runs_declared = source is None or source.handler == fn.spec.handler
        if fn.spec.required_env and outcome["with_env"]["imported"] and runs_declared:
            checks.append(_startup_check(key, fn, outcome["without_env"]))
    return checks


def _import_check(
    key: str,
    fn: ResolvedFunction,
    outcome: dict[str, Any],
    runtime_mismatch: str = "",
    source: HandlerSource | None = None,
) -> Check:
    """The handler imports; on failure the remedy names the likeliest cause.

    runtime_mismatch: why the image cannot load dependencies vendored for the declared
    runtime (another Python or CPU), or "" when it matches. source: where the imported
    handler comes from (None: configuration's handler).
    """
    handler = source.handler if source is not None and source.handler else fn.spec.handler
    module, attribute = handler.rsplit(".", 1)
    name = f"import {key} ({handler})"
    expected = f"module {module} imports and defines callable {attribute}"
    evidence = {"source": source.source} if source is not None else {}
    if outcome["imported"] and outcome["callable"]:
        return Check(
            name=name,
            ok=True,
            expected=expected,
            found=f"ok ({outcome['module_file']})",
            evidence=evidence,
        )
    if outcome["imported"]:
        what = "is not callable" if outcome["attribute"] else "is missing"
        setting = f"functions.{key}.handler"
        if source is not None and handler != fn.spec.handler:
            setting = f"the handler's source, {source.source}: {source.fix}"
        return Check(
            name=name,
            ok=False,
            expected=expected,
            found=f"{module}.{attribute} {what} in the image",
            remedy=f"define {attribute} in {module} or fix {setting}",
            evidence=evidence,
        )
    error = f"{outcome['error_type']}: {outcome['error']}"
    if outcome["error_type"] == "ModuleNotFoundError" and module.split(".")[0] in error:
        remedy = f"COPY the module {module} into the image's task root (Dockerfile)"
    elif runtime_mismatch and outcome["error_type"] in ("ImportError", "ModuleNotFoundError"):
        remedy = (
            f"fix the runtime mismatch first ({runtime_mismatch}): the dependencies were "
            "vendored for the declared runtime, so their compiled modules cannot load here"
        )
    elif "environment" in outcome["error"].lower() or "missing" in outcome["error"].lower():
        remedy = f"set the missing variables in the function's environment (functions.{key}.env)"
    else:
        remedy = f"fix the import-time error of {module} (traceback in the gate evidence)"
    return Check(
        name=name,
        ok=False,
        expected=expected,
        found=error,
        remedy=remedy,
        evidence={**evidence, "traceback": outcome.get("traceback", "")},
    )


def _startup_check(key: str, fn: ResolvedFunction, outcome: dict[str, Any]) -> Check:
    name = f"start-up validation {key}"
    required = list(fn.spec.required_env)
    expected = f"a cold start without its environment fails naming {', '.join(required)}"
    if not fn.spec.startup_validation:
        # A promise the service makes (functions.KEY.startup_validation), not one assumed of
        # every codebase: reading settings at first use is a legitimate design.
        return Check(
            name=name,
            ok=True,
            expected=f"not declared (functions.{key}.startup_validation = false)",
            found="imported without its settings"
            if outcome["imported"]
            else f"{outcome['error_type']} without its settings",
        )
    if outcome["imported"]:
        return Check(
            name=name,
            ok=False,
            expected=expected,
            found="the handler imported with none of its required settings",
            remedy=f"validate {', '.join(required)} at import (cold start), not at first use",
        )
    message = outcome["error"]
    unnamed = [var for var in required if var not in message]
    return Check(
        name=name,
        ok=not unnamed,
        expected=expected,
        found=f"{outcome['error_type']}: {message[:300]}"
        + (f" (does not name {', '.join(unnamed)})" if unnamed else ""),
        remedy="" if not unnamed else "make the start-up error name every missing variable",
    )


def image_gate(
    client: docker.DockerClient,
    config: DeployConfig,
    image: str,
    env: dict[str, dict[str, str]] | None = None,
    image_configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> GateResult:
    """Gate the image: the handler each function will really run imports inside it, as its
    function will run it, and is the one configuration declares.

    env: the functions' live environments (by function key) when known; the configured ones
    otherwise. image_configs: the functions' live ImageConfig (by key; {} when none is set),
    None when not read: then each function is judged against the image's CMD alone.
    """
    started = time.monotonic()
    try:
        attrs = client.images.get(image).attrs
    except ImageNotFound as exc:
        raise DockerError(
            "the image to gate does not exist in the engine",
            expected=image,
            found="no such image",
            remedy="build the image first",
        ) from exc
    image_arch = attrs.get("Architecture", "unknown")
    cmd = image_cmd(config, attrs)
    sources = resolve(config, cmd, image_configs)
    functions = [
        fn.model_copy(update={"env": {k: SecretStr(v) for k, v in env[key].items()}})
        if env and key in env
        else fn
        for key, fn in config.functions.items()
        if sources[key].importable
    ]
    handlers = {key: str(source.handler) for key, source in sources.items() if source.importable}
    # With no importable handler at all the probe still reports the runtime's facts.
    report = run_probe(client, image, functions, handlers=handlers)
    checks = [
        entrypoint_check(config, cmd, image_configs),
        *evaluate(report, config, image_arch, sources),
    ]
    checks = scrub(checks, config.secret_values())
    return GateResult(
        gate="in-image import",
        boundary="process",
        strength=Strength.CONTENT,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )
