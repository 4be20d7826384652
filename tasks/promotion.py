"""Promotion's registry side: the validated image, by digest, in the target's registry.

The image is the one a succeeded deploy of the commit recorded in the source environment
(flows/promote.py decides which, tasks/promotion_policy.py); it must be in the target
environment's registry (copied there first when the registries differ); it is pulled by
digest, then gated again against this environment's functions like any other image.
"""

from __future__ import annotations

import time

import docker

from gangway.config import DeployConfig
from gangway.errors import RegistryError
from tasks.docker_engine import pull_by_digest
from tasks.image_build import BuiltImage
from tasks.registry import PushedImage, RegistryCredentials, registry_client
from tasks.source import SourceRevision


def confirm_in_registry(
    config: DeployConfig, digest: str, validated_by: str, commit_sha: str
) -> PushedImage:
    """The validated digest as this environment's registry serves it, or RegistryError."""
    registry = config.environment.registry
    repository = config.service.build.repository
    client = registry_client(config)
    try:
        served = client.digest(repository, digest)
    finally:
        client.close()
    if served != digest:
        raise RegistryError(
            f"{repository}@{digest} is not in the registry {registry}",
            expected=f"the digest {validated_by} validated",
            found="no such manifest (deleted, expired by a lifecycle policy, or never copied)",
            remedy=f"push or copy the image into {registry} again (gangway promote copies it "
            "when the source's registry differs), or deploy commit "
            f"{commit_sha[:12]} with gangway deploy to rebuild it",
        )
    return PushedImage(registry, repository, "", digest, 0.0)


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
