"""Promotion: deploy the image a commit already validated, by digest, without rebuilding it.

When CI is blocked by something unrelated, an engineer promotes by commit SHA. The image is
the one a succeeded deploy of that commit recorded in the ledger (clean trees only), and it
must be in the target environment's registry; it is pulled by digest, then gated again
against this environment's functions like any other image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import docker

from gangway.config import DeployConfig
from gangway.errors import ConfigError, RegistryError
from gangway.record import Outcome
from tasks.docker_engine import pull_by_digest
from tasks.image_build import BuiltImage
from tasks.ledger import Ledger, of_service
from tasks.registry import PushedImage, RegistryCredentials, registry_client
from tasks.source import SourceRevision


@dataclass(frozen=True)
class ValidatedImage:
    """An image digest a succeeded deploy of the commit proved, and where."""

    commit_sha: str
    digest: str
    deploy_id: str
    env: str


def find_validated(ledger: Ledger, commit_sha: str, service: str | None = None) -> ValidatedImage:
    """The newest digest a succeeded, clean deploy of commit_sha (of service) recorded, or
    ConfigError."""
    records = [r for r in ledger.by_sha(commit_sha) if of_service(r, service)]
    for record in records:
        if record.outcome is Outcome.SUCCEEDED and record.image_digest and not record.dirty:
            return ValidatedImage(
                commit_sha=record.commit_sha,
                digest=record.image_digest,
                deploy_id=record.deploy_id,
                env=record.env,
            )
    seen = ", ".join(f"{r.env}:{r.outcome}{' (dirty)' if r.dirty else ''}" for r in records[:5])
    raise ConfigError(
        f"commit {commit_sha[:12]} has no validated image to promote",
        expected="a succeeded deploy of this commit, from a clean tree, in the ledger",
        found=seen or "no deploy of this commit in the ledger",
        remedy="deploy the commit to a lower environment first, or deploy without --promote "
        "to build it",
    )


def confirm_in_registry(config: DeployConfig, image: ValidatedImage) -> PushedImage:
    """The validated digest as this environment's registry serves it, or RegistryError."""
    registry = config.environment.registry
    repository = config.service.build.repository
    client = registry_client(config)
    try:
        served = client.digest(repository, image.digest)
    finally:
        client.close()
    if served != image.digest:
        raise RegistryError(
            f"{repository}@{image.digest} is not in the registry {registry}",
            expected=f"the digest deploy {image.deploy_id[:12]} validated in {image.env}",
            found="no such manifest (deleted, expired by a lifecycle policy, or never copied)",
            remedy=f"copy the image into {registry}, or deploy commit "
            f"{image.commit_sha[:12]} without --promote to rebuild it",
        )
    return PushedImage(registry, repository, "", image.digest, 0.0)


def pull_image(
    client: docker.DockerClient,
    pushed: PushedImage,
    revision: SourceRevision,
    credentials: RegistryCredentials | None = None,
) -> BuiltImage:
    """Pull the image by digest into the engine, for the in-image gate."""
    started = time.monotonic()
    reference = pushed.by_digest
    image = pull_by_digest(
        client,
        reference,
        remedy="check the engine can reach the registry (insecure registries need "
        "daemon configuration) and environment.registry_auth",
        auth_config=credentials.auth_config() if credentials else None,
    )
    architecture = str(image.attrs.get("Architecture", ""))
    return BuiltImage(
        image_id=str(image.id),
        reference=reference,
        revision=revision,
        architecture={"amd64": "x86_64"}.get(architecture, architecture),
        build_s=time.monotonic() - started,
        vendor_s=0.0,
    )
