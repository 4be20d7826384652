"""Process faults: the code → runtime boundary, caught inside the built image before any push.

Each row builds a variant of the reference image (the committed Dockerfile plus one sabotage
step) or changes what the function runs with (its live environment, its declared
architecture or Python), runs a real deploy on the rehearsal stack, and expects the in-image
gate to block it: nothing pushed, nothing moved, a ``[process]`` error naming the handler.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT
from tasks.aws import client

from .conftest import FaultRun, append_python, replace_text

pytestmark = pytest.mark.stack

GATE = "in-image gate"


def context_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the build context the next deploy builds from.

    Vendoring writes the dependencies for the declared platform and Python into
    ``<context>/vendor``: a row that declares another platform must not rewrite the shared
    service/vendor under the other environments' concurrent builds.
    """
    target = tmp_path / "service"
    shutil.copytree(
        REPO_ROOT / "service",
        target,
        ignore=shutil.ignore_patterns("vendor", "tests", "__pycache__", ".pytest_cache"),
    )
    monkeypatch.setenv("GANGWAY_SERVICE__BUILD__CONTEXT", str(target))
    return target


@pytest.mark.fault("handler module not copied into the image", group="process")
def test_handler_module_missing_from_image_blocks(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    # The seven-day outage: the module is in the repository, not in the image.
    variant("RUN rm ${LAMBDA_TASK_ROOT}/app/line_webhook.py")
    attempt = fault.deploy()
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=(
            "import line_webhook (app.line_webhook.handle_webhook)",
            "No module named 'app.line_webhook'",
            "COPY the module app.line_webhook",
        ),
    )
    assert record.image_digest is None, "an image that failed the gate must not be pushed"


@pytest.mark.fault("handler attribute missing from its module", group="process")
def test_handler_attribute_missing_blocks(fault: FaultRun, variant: Callable[..., None]) -> None:
    variant(replace_text("line_webhook", "def handle_webhook(", "def handle_webhook_v2("))
    attempt = fault.deploy()
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=(
            "app.line_webhook.handle_webhook is missing in the image",
            "define handle_webhook in app.line_webhook",
        ),
    )
    assert record.image_digest is None


@pytest.mark.fault("exception at import time (cold start)", group="process")
def test_exception_at_import_blocks(fault: FaultRun, variant: Callable[..., None]) -> None:
    variant(
        append_python(
            "query_tool",
            """
            raise RuntimeError("quote cache warm-up failed at import (variant)")
            """,
        )
    )
    attempt = fault.deploy()
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=(
            "import query_tool (app.query_tool.handler)",
            "RuntimeError: quote cache warm-up failed at import (variant)",
            "fix the import-time error of app.query_tool",
        ),
    )
    [check] = record.trigger["checks"]
    # The traceback is evidence in the record, not in the user's error text.
    assert "query_tool.py" in check["evidence"]["traceback"]
    assert record.image_digest is None


@pytest.mark.fault("required env var missing from the function's live config", group="process")
def test_required_env_var_missing_from_live_config_blocks(fault: FaultRun) -> None:
    # The world, not the image, is wrong: someone removed DB_HOST from the live function.
    # The in-image gate imports each handler with its function's LIVE environment.
    fn = fault.config.functions["query_tool"]
    lam = client(fault.config, "lambda")
    # Held in memory only (it carries the database password) and put back exactly as it was.
    live = lam.get_function_configuration(FunctionName=fn.name)["Environment"]["Variables"]
    assert "DB_HOST" in live, "the row starts from a function that has DB_HOST"
    lam.update_function_configuration(
        FunctionName=fn.name,
        Environment={"Variables": {k: v for k, v in live.items() if k != "DB_HOST"}},
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    try:
        attempt = fault.deploy()
    finally:
        lam.update_function_configuration(FunctionName=fn.name, Environment={"Variables": live})
        lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=(
            "import query_tool (app.query_tool.handler)",
            "missing required environment variables: DB_HOST",
            "set the missing variables in the function's environment",
        ),
    )
    assert [c["name"] for c in record.trigger["checks"]] == [
        "import query_tool (app.query_tool.handler)"
    ]


@pytest.mark.fault("image architecture differs from the function's", group="process")
def test_image_architecture_differs_from_the_functions_blocks(
    fault: FaultRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The functions are declared arm64; the base image (hence the built image) is amd64, as
    # when an image is built on an x86 machine without a target platform.
    context_copy(tmp_path, monkeypatch)
    for key in fault.config.functions:
        monkeypatch.setenv(f"GANGWAY_FUNCTIONS__{key.upper()}__ARCHITECTURE", "arm64")
    attempt = fault.deploy()
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=(
            "architecture api: expected arm64",
            "runtime machine x86_64, image architecture amd64",
            "build for the function's architecture",
        ),
    )
    failed = {c["name"]: c for c in record.trigger["checks"]}
    assert {f"architecture {key}" for key in fault.config.functions} <= set(failed)
    # The aarch64 wheels vendored for the declaration cannot load either; those import
    # failures point at the cause, not at "an import-time error" of each handler.
    imports = [c for name, c in failed.items() if name.startswith("import ")]
    assert imports and all(
        c["remedy"].startswith("fix the runtime mismatch first (image x86_64 vs declared arm64)")
        for c in imports
    ), imports
    assert record.image_digest is None


@pytest.mark.fault("image Python differs from the declared runtime", group="process")
def test_image_python_differs_from_the_declared_runtime_blocks(
    fault: FaultRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # service.build.python says 3.12; the base image is 3.11. Vendoring follows the
    # declaration (cp312 wheels), so the compiled dependencies cannot load in the image either.
    context_copy(tmp_path, monkeypatch)
    monkeypatch.setenv("GANGWAY_SERVICE__BUILD__PYTHON", "3.12")
    attempt = fault.deploy()
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=("python version: expected Python 3.12; found Python 3.11",),
    )
    checks = {c["name"]: c for c in record.trigger["checks"]}
    assert checks["python version"]["remedy"].startswith("use the base image of the declared")
    # Every handler import fails too (pydantic_core's cp312 module on a 3.11 interpreter);
    # each of those names the Python mismatch as the cause.
    imports = [c for name, c in checks.items() if name.startswith("import ")]
    assert len(imports) == len(fault.config.functions)
    assert all(
        c["remedy"].startswith("fix the runtime mismatch first (Python 3.11.")
        and "vs declared 3.12)" in c["remedy"]
        for c in imports
    ), imports
    assert record.image_digest is None


@pytest.mark.fault("image CMD wrong for a function without a command override", group="process")
def test_image_cmd_wrong_for_a_function_without_command_override_blocks(fault: FaultRun) -> None:
    # The image's CMD names app.api.handler (one image, seven functions): a function whose
    # command override was dropped would run the api handler. Only smoke caught this before.
    fn = fault.config.functions["ticker_fetcher"]
    lam = client(fault.config, "lambda")
    image_config = lam.get_function_configuration(FunctionName=fn.name)["ImageConfigResponse"][
        "ImageConfig"
    ]
    assert image_config.get("Command") == [fn.spec.handler], "the row starts from an override"
    lam.update_function_configuration(FunctionName=fn.name, ImageConfig={})
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    try:
        attempt = fault.deploy()
    finally:
        lam.update_function_configuration(FunctionName=fn.name, ImageConfig=image_config)
        lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    record = fault.blocked(
        attempt,
        step=GATE,
        boundary="process",
        says=(
            "effective handler ticker_fetcher",
            "app.api.handler from the image's CMD (service/Dockerfile:",
            'set CMD ["app.ticker_fetcher.handler"] at service/Dockerfile:',
            f'set ImageConfig.Command = ["app.ticker_fetcher.handler"] on function {fn.name}',
        ),
    )
    # Only the function that lost its override: the other six run their declared handler.
    assert [c["name"] for c in record.trigger["checks"]] == ["effective handler ticker_fetcher"]
