"""Every deploy step as a Prefect task: a thin wrapper over a plain, typed boundary function.

Timeouts bound every step; only transient failures are retried (tasks/step.py). The wrappers
open their own clients so that their inputs stay plain data.
"""

from __future__ import annotations

from gangway.config import DeployConfig, SmokeCase
from gangway.evidence import GateResult
from tasks import columns, ground_truth, lambda_deploy, logs_scan, migrations, smoke
from tasks.docker_engine import docker_client
from tasks.image_build import BuiltImage, build_image
from tasks.image_gate import image_gate
from tasks.registry import PushedImage, push_image
from tasks.source import SourceRevision
from tasks.step import step


@step("build image", timeout_s=1200)
def build(config: DeployConfig, revision: SourceRevision) -> BuiltImage:
    """Build the service image for revision, labelled with its commit SHA."""
    return build_image(docker_client(), config, revision)


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
        image.revision.tag,
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
def config_gate(
    config: DeployConfig, live: dict[str, lambda_deploy.LiveFunction]
) -> GateResult:
    """The functions' deployed configuration covers what their handlers need."""
    return lambda_deploy.config_gate(config, live)


@step("deploy version", timeout_s=600, retries=3)
def deploy_version(
    config: DeployConfig, live: lambda_deploy.LiveFunction, image_uri: str
) -> lambda_deploy.DeployedVersion:
    """Update one function's code by digest, publish a version, verify its image."""
    return lambda_deploy.deploy_version(config, live, image_uri)


@step("shift alias", timeout_s=60, retries=3)
def shift_alias(config: DeployConfig, name: str, version: str) -> lambda_deploy.AliasState:
    """Point the alias at version with no routing weights."""
    return lambda_deploy.shift_alias(config, name, version)


@step("set canary", timeout_s=60, retries=3)
def set_canary(
    config: DeployConfig, name: str, stable: str, new: str, percent: int
) -> lambda_deploy.AliasState:
    """Keep the alias on stable and route percent of invokes to new."""
    return lambda_deploy.set_canary(config, name, stable, new, percent)


@step("restore alias", timeout_s=60, retries=3)
def restore_alias(
    config: DeployConfig, name: str, previous: lambda_deploy.AliasState
) -> lambda_deploy.AliasState:
    """Put the alias back where it was and read it back."""
    return lambda_deploy.restore_alias(config, name, previous)


@step("smoke invoke", timeout_s=900)
def smoke_invoke(
    config: DeployConfig, case: SmokeCase, qualifier: str, correlation_id: str
) -> smoke.SmokeOutcome:
    """Invoke one smoke case and validate its response."""
    return smoke.smoke_invoke(config, case, qualifier, correlation_id)


@step("log scan", timeout_s=120, retries=2)
def scan_logs(config: DeployConfig, name: str, version: str, since_ms: int) -> GateResult:
    """Scan the new version's log streams for errors and for application lines."""
    return logs_scan.scan_logs(config, name, version, since_ms)


@step("count invocations", timeout_s=120, retries=2)
def count_invocations(
    config: DeployConfig, name: str, version: str, since_ms: int
) -> tuple[int, int]:
    """(invocations, errors) of one version since since_ms, from its logs."""
    return logs_scan.count_invocations(config, name, version, since_ms)


@step("ground truth", timeout_s=120, retries=2)
def check_ground_truth(
    config: DeployConfig, case: SmokeCase, payload: dict | None, correlation_id: str
) -> GateResult:
    """The rows and objects a smoke case wrote are really there."""
    return ground_truth.check_ground_truth(config, case, payload, correlation_id)
