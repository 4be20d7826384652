"""What each deploy step asks of its boundary: plain, typed functions over the boundary clients.

The executor runs each plan step as one Prefect task with the step's timeout and retry
policy (gangway/plan.py, tasks/prefect_task.py); these functions are what those tasks call,
so a step is one task run, not a tree of them. They open their own clients so that their
inputs stay plain data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from gangway.config import DeployConfig, SmokeCase
from gangway.errors import GangwayError
from gangway.evidence import GateResult
from tasks import (
    columns,
    ground_truth,
    headroom,
    lambda_alias,
    lambda_config_gate,
    lambda_publish,
    logs_scan,
    migrations,
    smoke,
)
from tasks.docker_engine import docker_client
from tasks.image_build import BuiltImage, build_image
from tasks.image_gate import image_gate
from tasks.image_reuse import ReusableImage, ReuseDecision, decide_reuse, reuse_image
from tasks.lambda_read import AliasState, LiveFunction
from tasks.promotion import pull_image
from tasks.registry import PushedImage, push_image, registry_credentials
from tasks.source import SourceRevision

K = TypeVar("K")
V = TypeVar("V")


def build(config: DeployConfig, revision: SourceRevision) -> BuiltImage:
    """Build the service image for revision, labelled with its commit SHA."""
    return build_image(docker_client(), config, revision)


def find_reuse(config: DeployConfig, revision: SourceRevision) -> ReuseDecision:
    """Whether revision's image is already pushed and verifies (read-only; dirty: never)."""
    if revision.dirty:
        return ReuseDecision(None, "dirty tree: its tag does not describe its content")
    try:
        engine = docker_client(timeout=30)
    except GangwayError as exc:  # the build step meets the same engine and reports it
        return ReuseDecision(None, f"could not check for a pushed image: {exc.message}")
    return decide_reuse(engine, config, revision)


def reuse(config: DeployConfig, reusable: ReusableImage) -> tuple[BuiltImage, PushedImage]:
    """The verified pushed image, made available locally for the gate, without a build."""
    return reuse_image(docker_client(), config, reusable)


def pull(
    pushed: PushedImage, revision: SourceRevision, config: DeployConfig | None = None
) -> BuiltImage:
    """Pull a validated image by digest (promotion: no rebuild), logged in as config says."""
    credentials = registry_credentials(config) if config is not None else None
    return pull_image(docker_client(), pushed, revision, credentials)


def gate_image(
    config: DeployConfig,
    image: BuiltImage,
    env: dict[str, dict[str, str]] | None = None,
    image_configs: dict[str, dict[str, Any]] | None = None,
) -> GateResult:
    """Import inside the built image the handler each function will really run (with the
    functions' env); image_configs: their live ImageConfig, None when not read."""
    return image_gate(docker_client(), config, image.reference, env, image_configs)


def push(config: DeployConfig, image: BuiltImage) -> PushedImage:
    """Push the image and read its manifest digest back from the registry."""
    return push_image(
        docker_client(),
        config.environment.registry,
        config.service.build.repository,
        image.tag,
        credentials=registry_credentials(config),
    )


def lint(config: DeployConfig, plan: migrations.MigrationPlan, allow: bool) -> GateResult:
    """Block destructive pending revisions unless allowed."""
    return migrations.lint_gate(config, plan, allow)


def migrate(config: DeployConfig) -> migrations.MigrationResult:
    """Apply pending revisions under the database's migration lock."""
    return migrations.migrate(config)


def migration_applied(config: DeployConfig, plan: migrations.MigrationPlan) -> GateResult:
    """The version table and the real columns agree."""
    return migrations.agreement_gate(config, plan)


def verify_columns(config: DeployConfig, plan: migrations.MigrationPlan) -> GateResult:
    """Every column the code writes exists with a compatible type and nullability."""
    return columns.verify_columns(config, plan)


def config_gate(config: DeployConfig, live: dict[str, LiveFunction]) -> GateResult:
    """The functions' deployed configuration covers what their handlers need."""
    return lambda_config_gate.config_gate(config, live)


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


def deploy_versions(
    config: DeployConfig, live: dict[str, LiveFunction], image_uri: str
) -> dict[str, lambda_publish.DeployedVersion]:
    """Update every function's code by digest, publish a version each, verify their images."""
    return _each(
        lambda key: lambda_publish.deploy_version(config, live[key], image_uri), list(live)
    )


def shift_aliases(config: DeployConfig, targets: dict[str, str]) -> dict[str, AliasState]:
    """Point each function's alias (by function name) at its new version, no weights."""
    return _each(lambda name: lambda_alias.shift_alias(config, name, targets[name]), list(targets))


def set_canaries(
    config: DeployConfig, targets: dict[str, tuple[str, str]], percent: int
) -> dict[str, AliasState]:
    """Keep each alias on its stable version and route percent of invokes to the new one."""
    return _each(
        lambda name: lambda_alias.set_canary(config, name, *targets[name], percent),
        list(targets),
    )


def _step_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger (shown with the run), or a module logger outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def restore_aliases(
    config: DeployConfig,
    previous: dict[str, AliasState],
    window_s: float | None = None,
    moved_to: dict[str, AliasState] | None = None,
) -> dict[str, AliasState | str]:
    """Put every moved alias back where it was and read it back; failures are per function.

    While AWS does not answer (or throttles), each restore keeps retrying with backoff for
    window_s (default: the environment's restore window), logging every retry. With moved_to
    (what the deploy set), an alias another deploy moved since is left alone.
    """
    return lambda_alias.restore_aliases(
        config, previous, window_s, on_retry=_step_logger().warning, moved_to=moved_to
    )


def smoke_all(
    config: DeployConfig,
    qualifiers: dict[str, str],
    correlation_id: str,
    expect_versions: dict[str, str],
) -> tuple[GateResult, list[smoke.SmokeOutcome]]:
    """Invoke every smoke case (functions concurrently, each function's cases in order);
    validate responses and the versions that ran. Outcomes carry their request ids."""
    return smoke.smoke_gate(config, qualifiers, correlation_id, expect_versions)


def scan_logs(
    config: DeployConfig,
    versions: dict[str, str],
    since_ms: int,
    request_ids: dict[str, list[str]] | None = None,
) -> list[GateResult]:
    """Scan each new version's log streams (function name → version) for errors and app lines;
    request_ids (function name → the smoke invokes' ids, smoke.request_ids) must each be found
    with their own START, END and REPORT lines within environment.deploy.log_ingestion_s.
    Each function's log result is followed by its headroom result (tasks/headroom.py) over
    the REPORTs of those invokes."""
    ids = request_ids or {}
    found = _each(
        lambda name: logs_scan.scan(
            config, name, versions[name], since_ms, request_ids=ids.get(name, [])
        ),
        list(versions),
    )
    results: list[GateResult] = []
    for name, scanned in found.items():
        limits = headroom.limits_for(config, name, scanned.timeout_ms, scanned.memory_mb)
        results += [scanned.result, headroom.judge(name, limits, scanned.reports)]
    return results


def count_invocations(
    config: DeployConfig, versions: dict[str, str], since_ms: int
) -> dict[str, tuple[int, int]]:
    """(invocations, errors) of each version (function name → version) since since_ms."""
    return _each(
        lambda name: logs_scan.count_invocations(config, name, versions[name], since_ms),
        list(versions),
    )


# The count waits (bounded by environment.deploy.bake_log_wait_s, at most 300 s) for the log
# lines of the bake's invokes that ran the new version and of every invocation seen starting
# in the window; with none it can name, it reads only after the ingestion window (capped by
# the same bound). The bake step's timeout allows for it.
def count_canary(
    config: DeployConfig,
    versions: dict[str, str],
    since_ms: int,
    request_ids: dict[str, list[str]],
    unreached: Collection[str] | None = None,
) -> dict[str, logs_scan.WindowCount]:
    """Each version's invocations since since_ms (function name → version: the canary's, or
    the stable one's for the comparison), waiting for the request ids known to have run it.
    unreached: the functions whose new version no
    synthetic invoke reached (None: all); only their count reads after the ingestion window,
    for traffic it cannot name (a version the bake's invokes reached is already waited on)."""
    policy = config.environment.deploy
    quiet = set(versions) if unreached is None else set(unreached)
    return _each(
        lambda name: logs_scan.count_window(
            config,
            name,
            versions[name],
            since_ms,
            request_ids=request_ids.get(name, []),
            wait_s=policy.bake_log_wait_s,
            settle_s=policy.log_ingestion_s if name in quiet else 0.0,
        ),
        list(versions),
    )


def bake_headroom(
    config: DeployConfig, counts: dict[str, logs_scan.WindowCount]
) -> list[GateResult]:
    """The headroom gate of each new version (function name → its window count) over every
    invocation it REPORTed in the bake window; a window without any judges nothing."""
    return [
        headroom.judge(
            name,
            headroom.limits_for(config, name, count.timeout_ms, count.memory_mb),
            count.reports,
            what="bake's invocations",
            required=False,
        )
        for name, count in counts.items()
    ]


def check_ground_truth(
    config: DeployConfig, case: SmokeCase, payload: dict | None, correlation_id: str
) -> GateResult:
    """The rows and objects a smoke case wrote are really there."""
    return ground_truth.check_ground_truth(config, case, payload, correlation_id)
