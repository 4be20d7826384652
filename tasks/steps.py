"""Every deploy step as a Prefect task: a thin wrapper over a plain, typed boundary function.

Timeouts bound every step; only transient failures are retried (tasks/step.py). The wrappers
open their own clients so that their inputs stay plain data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from gangway.config import DeployConfig, SmokeCase
from gangway.errors import GangwayError
from gangway.evidence import GateResult
from tasks import columns, ground_truth, lambda_deploy, logs_scan, migrations, smoke
from tasks.docker_engine import docker_client
from tasks.image_build import BuiltImage, build_image
from tasks.image_gate import image_gate
from tasks.promotion import pull_image
from tasks.registry import PushedImage, push_image
from tasks.source import SourceRevision
from tasks.step import step

K = TypeVar("K")
V = TypeVar("V")


@step("build image", timeout_s=1200)
def build(config: DeployConfig, revision: SourceRevision) -> BuiltImage:
    """Build the service image for revision, labelled with its commit SHA."""
    return build_image(docker_client(), config, revision)


@step("pull image", timeout_s=900, retries=3)
def pull(pushed: PushedImage, revision: SourceRevision) -> BuiltImage:
    """Pull a validated image by digest (promotion: no rebuild)."""
    return pull_image(docker_client(), pushed, revision)


@step("in-image import gate", timeout_s=300)
def gate_image(
    config: DeployConfig, image: BuiltImage, env: dict[str, dict[str, str]] | None = None
) -> GateResult:
    """Import every function's handler inside the built image (with the functions' env)."""
    return image_gate(docker_client(), config, image.reference, env)


@step("push image", timeout_s=900, retries=3)
def push(config: DeployConfig, image: BuiltImage) -> PushedImage:
    """Push the image and read its manifest digest back from the registry."""
    return push_image(
        docker_client(),
        config.environment.registry,
        config.service.build.repository,
        image.tag,
    )


@step("migration lint", timeout_s=120, retries=2)
def lint(config: DeployConfig, plan: migrations.MigrationPlan, allow: bool) -> GateResult:
    """Block destructive pending revisions unless allowed."""
    return migrations.lint_gate(config, plan, allow)


@step("migrate", timeout_s=900)
def migrate(config: DeployConfig) -> migrations.MigrationResult:
    """Apply pending revisions under the database's migration lock."""
    return migrations.migrate(config)


@step("migration applied", timeout_s=120, retries=2)
def migration_applied(config: DeployConfig, plan: migrations.MigrationPlan) -> GateResult:
    """The version table and the real columns agree."""
    return migrations.agreement_gate(config, plan)


@step("verify columns", timeout_s=120, retries=2)
def verify_columns(config: DeployConfig, plan: migrations.MigrationPlan) -> GateResult:
    """Every column the code writes exists with a compatible type and nullability."""
    return columns.verify_columns(config, plan)


@step("config gate", timeout_s=60)
def config_gate(config: DeployConfig, live: dict[str, lambda_deploy.LiveFunction]) -> GateResult:
    """The functions' deployed configuration covers what their handlers need."""
    return lambda_deploy.config_gate(config, live)


def _each(action: Callable[[K], V], items: list[K]) -> dict[K, V]:
    """Run action for every item concurrently (I/O-bound AWS calls); re-raise the first error.

    Concurrency lives inside one step rather than in Prefect's thread runner, so each step
    runs on the flow's main thread where its timeout can really interrupt it.
    """
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = {item: pool.submit(action, item) for item in items}
        return {item: future.result() for item, future in futures.items()}


@step("deploy versions", timeout_s=600, retries=3)
def deploy_versions(
    config: DeployConfig, live: dict[str, lambda_deploy.LiveFunction], image_uri: str
) -> dict[str, lambda_deploy.DeployedVersion]:
    """Update every function's code by digest, publish a version each, verify their images."""
    return _each(lambda key: lambda_deploy.deploy_version(config, live[key], image_uri), list(live))


@step("shift aliases", timeout_s=120, retries=3)
def shift_aliases(
    config: DeployConfig, targets: dict[str, str]
) -> dict[str, lambda_deploy.AliasState]:
    """Point each function's alias (by function name) at its new version, no weights."""
    return _each(lambda name: lambda_deploy.shift_alias(config, name, targets[name]), list(targets))


@step("set canaries", timeout_s=120, retries=3)
def set_canaries(
    config: DeployConfig, targets: dict[str, tuple[str, str]], percent: int
) -> dict[str, lambda_deploy.AliasState]:
    """Keep each alias on its stable version and route percent of invokes to the new one."""
    return _each(
        lambda name: lambda_deploy.set_canary(config, name, *targets[name], percent),
        list(targets),
    )


def _step_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger (shown with the run), or a module logger outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


# Each restore retries AWS itself for a bounded window (environment.deploy.restore_window_s, 60 s
# by default); the timeout leaves room for its last attempt.
@step("restore aliases", timeout_s=120, retries=3)
def restore_aliases(
    config: DeployConfig,
    previous: dict[str, lambda_deploy.AliasState],
    window_s: float | None = None,
) -> dict[str, lambda_deploy.AliasState | str]:
    """Put every moved alias back where it was and read it back; failures are per function.

    While AWS does not answer (or throttles), each restore keeps retrying with backoff for
    window_s (default: the environment's restore window), logging every retry.
    """
    log = _step_logger()
    lam = lambda_deploy.restore_client(config)

    def restore(name: str) -> lambda_deploy.AliasState | str:
        try:
            return lambda_deploy.restore_alias(
                config, name, previous[name], lam=lam, window_s=window_s, on_retry=log.warning
            )
        except GangwayError as exc:  # every alias gets its try; the caller reports each
            return exc.render()

    return _each(restore, list(previous))


@step("smoke", timeout_s=900)
def smoke_all(
    config: DeployConfig,
    qualifiers: dict[str, str],
    correlation_id: str,
    expect_versions: dict[str, str],
) -> tuple[GateResult, list[smoke.SmokeOutcome]]:
    """Invoke every smoke case in order; validate responses and the versions that ran."""
    return smoke.smoke_gate(config, qualifiers, correlation_id, expect_versions)


@step("log scan", timeout_s=180, retries=2)
def scan_logs(config: DeployConfig, versions: dict[str, str], since_ms: int) -> list[GateResult]:
    """Scan each new version's log streams (function name → version) for errors and app lines."""
    found = _each(
        lambda name: logs_scan.scan_logs(config, name, versions[name], since_ms), list(versions)
    )
    return list(found.values())


@step("count invocations", timeout_s=120, retries=2)
def count_invocations(
    config: DeployConfig, versions: dict[str, str], since_ms: int
) -> dict[str, tuple[int, int]]:
    """(invocations, errors) of each version (function name → version) since since_ms."""
    return _each(
        lambda name: logs_scan.count_invocations(config, name, versions[name], since_ms),
        list(versions),
    )


# The count waits (bounded by environment.deploy.bake_log_wait_s, at most 300 s) for the log
# lines of the bake's invokes that ran the new version; the timeout leaves room for it.
@step("count canary invocations", timeout_s=420, retries=2)
def count_canary(
    config: DeployConfig,
    versions: dict[str, str],
    since_ms: int,
    request_ids: dict[str, list[str]],
) -> dict[str, logs_scan.WindowCount]:
    """Each new version's invocations since since_ms (function name → version), waiting for
    the request ids known to have run it."""
    wait_s = config.environment.deploy.bake_log_wait_s
    return _each(
        lambda name: logs_scan.count_window(
            config,
            name,
            versions[name],
            since_ms,
            request_ids=request_ids.get(name, []),
            wait_s=wait_s,
        ),
        list(versions),
    )


@step("ground truth", timeout_s=120, retries=2)
def check_ground_truth(
    config: DeployConfig, case: SmokeCase, payload: dict | None, correlation_id: str
) -> GateResult:
    """The rows and objects a smoke case wrote are really there."""
    return ground_truth.check_ground_truth(config, case, payload, correlation_id)
