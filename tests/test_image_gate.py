"""The code → runtime boundary, proven inside the real built image.

The seven-day outage: `handle_webhook` existed in the repo but not in the image. Only an
import inside the built image catches that; these tests build real images and run the probe.
"""

from __future__ import annotations

from pathlib import Path

import docker as docker_sdk
import pytest

from gangway.config import DeployConfig
from gangway.evidence import GateFailed, Status
from tasks.image_build import BuiltImage, build_image
from tasks.image_gate import image_gate, run_probe
from tasks.source import source_revision

pytestmark = pytest.mark.stack


def _with_dockerfile(config: DeployConfig, dockerfile: Path) -> DeployConfig:
    build = config.service.build.model_copy(update={"dockerfile": str(dockerfile)})
    return config.model_copy(update={"service": config.service.model_copy(update={"build": build})})


def _broken_image(
    docker: docker_sdk.DockerClient, config: DeployConfig, tmp_path: Path, extra: str
) -> tuple[DeployConfig, BuiltImage]:
    original = (config.build_context / config.service.build.dockerfile).read_text()
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(original + "\n" + extra + "\n")
    broken = _with_dockerfile(config, dockerfile)
    revision = source_revision(config.root, [config.build_context])
    return broken, build_image(docker, broken, revision, tag=f"variant-{tmp_path.name[:40]}")


def test_reference_image_imports_all_seven_handlers(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, service_image: BuiltImage
) -> None:
    result = image_gate(docker, dev_config, service_image.reference)
    assert result.status is Status.PASSED, result.summary()
    imports = [c for c in result.checks if c.name.startswith("import ")]
    assert len(imports) == 7
    assert all("/var/task/app/" in c.found for c in imports)
    startups = [c for c in result.checks if c.name.startswith("start-up validation")]
    assert len(startups) == 7 and all(c.ok for c in startups)
    labels = docker.images.get(service_image.reference).labels
    assert labels["org.opencontainers.image.revision"] == service_image.revision.sha


def test_handler_module_missing_from_image_fails_naming_the_module(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, tmp_path: Path
) -> None:
    # The outage: the module is in the repo, not in the image.
    config, image = _broken_image(
        docker, dev_config, tmp_path, "RUN rm ${LAMBDA_TASK_ROOT}/app/line_webhook.py"
    )
    result = image_gate(docker, config, image.reference)
    failed = {c.name: c for c in result.failures}
    assert list(failed) == ["import line_webhook (app.line_webhook.handle_webhook)"]
    check = failed["import line_webhook (app.line_webhook.handle_webhook)"]
    assert "No module named 'app.line_webhook'" in check.found
    assert "COPY the module app.line_webhook" in check.remedy
    with pytest.raises(GateFailed) as err:
        result.raise_if_failed()
    assert err.value.boundary == "process"
    assert "app.line_webhook" in str(err.value)


def test_handler_attribute_missing_fails_naming_the_attribute(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, tmp_path: Path
) -> None:
    config, image = _broken_image(
        docker,
        dev_config,
        tmp_path,
        "RUN sed -i 's/def handle_webhook(/def handle_webhook_v2(/' "
        "${LAMBDA_TASK_ROOT}/app/line_webhook.py",
    )
    result = image_gate(docker, config, image.reference)
    assert [c.name for c in result.failures] == [
        "import line_webhook (app.line_webhook.handle_webhook)"
    ]
    assert "app.line_webhook.handle_webhook is missing in the image" in result.failures[0].found


def test_exception_at_import_is_reported_with_its_traceback(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, tmp_path: Path
) -> None:
    config, image = _broken_image(
        docker,
        dev_config,
        tmp_path,
        "RUN echo 'raise RuntimeError(\"boom at import\")' "
        ">> ${LAMBDA_TASK_ROOT}/app/query_tool.py",
    )
    result = image_gate(docker, config, image.reference)
    [failure] = result.failures
    assert failure.name.startswith("import query_tool")
    assert failure.found == "RuntimeError: boom at import"
    assert "query_tool.py" in failure.evidence["traceback"]


def test_missing_env_var_fails_at_cold_start_naming_it(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, service_image: BuiltImage
) -> None:
    fn = dev_config.functions["report_worker"]
    env = {k: v for k, v in fn.env.items() if k not in ("DB_PASSWORD", "REPORT_BUCKET")}
    report = run_probe(docker, service_image.reference, [fn.model_copy(update={"env": env})])
    outcome = report["functions"]["report_worker"]["with_env"]
    assert outcome["imported"] is False
    assert "DB_PASSWORD" in outcome["error"] and "REPORT_BUCKET" in outcome["error"]
    # The value of a secret never appears, only its name.
    assert dev_config.db_password.get_secret_value() not in outcome["error"]


def test_wrong_python_and_architecture_are_reported(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, service_image: BuiltImage
) -> None:
    build = dev_config.service.build.model_copy(update={"python": "3.12"})
    fn = dev_config.functions["api"]
    arm = fn.model_copy(update={"spec": fn.spec.model_copy(update={"architecture": "arm64"})})
    config = dev_config.model_copy(
        update={
            "service": dev_config.service.model_copy(update={"build": build}),
            "functions": {**dev_config.functions, "api": arm},
        }
    )
    result = image_gate(docker, config, service_image.reference)
    failed = {c.name: c for c in result.failures}
    assert set(failed) == {"python version", "architecture api"}
    assert failed["python version"].found.startswith("Python 3.11")
    assert "x86_64" in failed["architecture api"].found
