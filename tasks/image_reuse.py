"""Skip the build when the commit's image is already pushed, and prove it is that image.

A clean commit's image is tagged with its SHA (tasks/source.py). When the registry serves
that tag, the image is reused only if every link of the chain holds:
- the manifest the registry serves hashes to the digest it names (sha256 over the bytes);
- the image's config blob hashes to the digest the manifest names, and its labels say this
  commit, a clean tree, this service, and the same build recipe (tasks/image_build.py);
- when the engine still has the image it built for the tag, the registry's digest is one of
  that image's RepoDigests: a tag moved since our push (re-pushed, tampered) is not ours.
A dirty tree is never reused: its tag does not describe its content.

find_reusable is a read-only query (the planner calls it while observing the world);
reuse_image makes the image available to the in-image gate without building it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from gangway.config import DeployConfig
from gangway.errors import DockerError, RegistryError
from tasks.docker_engine import pull_by_digest
from tasks.image_build import (
    DIRTY_LABEL,
    RECIPE_LABEL,
    REVISION_LABEL,
    SERVICE_LABEL,
    BuiltImage,
    build_recipe,
    image_architecture,
)
from tasks.registry import PushedImage, RegistryClient, registry_client, registry_credentials
from tasks.source import SourceRevision

# The single-image manifest types an engine push produces; an index is not reused (gangway
# pushes one platform per tag, so an index under a commit tag was not pushed by gangway).
IMAGE_MANIFESTS = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
REUSE_QUERY_TIMEOUT_S = 5.0
ENGINE_ARCH = {"amd64": "x86_64", "arm64": "arm64", "x86_64": "x86_64", "aarch64": "arm64"}


@dataclass(frozen=True)
class ReusableImage:
    """A pushed image proven to be the build of revision: where it is and what was checked."""

    revision: SourceRevision
    pushed: PushedImage
    architecture: str
    checks: tuple[str, ...]


@dataclass(frozen=True)
class ReuseDecision:
    """The answer of the reuse query: the image to reuse, or why the build must run."""

    image: ReusableImage | None
    reason: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def decide_reuse(
    client: docker.DockerClient, config: DeployConfig, revision: SourceRevision
) -> ReuseDecision:
    """Whether revision's pushed image can stand in for a build, and why (read-only)."""
    if revision.dirty:
        return ReuseDecision(None, "dirty tree: its tag does not describe its content")
    # Short: this is an optimisation asked before the build, not the push's own read-back.
    registry = registry_client(config, timeout_s=REUSE_QUERY_TIMEOUT_S)
    try:
        return _decide(client, registry, config, revision)
    except (RegistryError, DockerError) as exc:
        # Not this query's failure to report: the build and push steps meet the same
        # registry and engine and fail there, at the step that names the boundary.
        return ReuseDecision(None, f"could not check for a pushed image: {exc.message}")
    finally:
        registry.close()


def find_reusable(
    client: docker.DockerClient, config: DeployConfig, revision: SourceRevision
) -> ReusableImage | None:
    """The already-pushed, verified image of a clean revision, or None (build it)."""
    return decide_reuse(client, config, revision).image


def _decide(
    client: docker.DockerClient,
    registry: RegistryClient,
    config: DeployConfig,
    revision: SourceRevision,
) -> ReuseDecision:
    repository = config.service.build.repository
    tag = revision.tag
    found = registry.manifest(repository, tag)
    if found is None:
        return ReuseDecision(None, f"no image tagged {tag[:12]} in the registry")
    body, media_type, served = found
    computed = _sha256(body)
    if served != computed:
        return ReuseDecision(
            None, f"the manifest of {tag[:12]} hashes to {computed}, the registry names {served}"
        )
    if media_type.split(";")[0].strip() not in IMAGE_MANIFESTS:
        return ReuseDecision(None, f"{tag[:12]} is a {media_type}, not one image")
    manifest = json.loads(body)
    config_digest = str(manifest.get("config", {}).get("digest", ""))
    blob = registry.blob(repository, config_digest) if config_digest else None
    if blob is None or _sha256(blob) != config_digest:
        return ReuseDecision(None, f"the image config of {tag[:12]} is missing or corrupt")
    image_config: dict[str, Any] = json.loads(blob)
    labels = (image_config.get("config") or {}).get("Labels") or {}
    architecture = image_architecture(config)
    wanted = {
        REVISION_LABEL: revision.sha,
        DIRTY_LABEL: "false",
        SERVICE_LABEL: config.service.name,
        RECIPE_LABEL: build_recipe(config, architecture),
    }
    wrong = [f"{k}={labels.get(k)!r}" for k, v in wanted.items() if labels.get(k) != v]
    if wrong:
        return ReuseDecision(None, f"{tag[:12]} carries other labels: {', '.join(wrong)}")
    image_arch = ENGINE_ARCH.get(str(image_config.get("architecture")), "")
    if image_arch != architecture:
        return ReuseDecision(
            None, f"{tag[:12]} is built for {image_config.get('architecture')}, not {architecture}"
        )
    by_digest = f"{config.image_repository}@{computed}"
    local = _local_image(client, f"{config.image_repository}:{tag}")
    if local is not None:
        ours = [
            d
            for d in local.attrs.get("RepoDigests") or []
            if d.startswith(f"{config.image_repository}@")
        ]
        if ours and by_digest not in ours:
            return ReuseDecision(
                None,
                f"the registry's {tag[:12]} is {computed}, the engine pushed {', '.join(ours)}: "
                "the tag moved since",
            )
    checks = (
        f"manifest sha256 = {computed}",
        f"config blob sha256 = {config_digest}",
        f"labels: commit {revision.sha[:12]}, clean, service {config.service.name}, same recipe",
        f"architecture {architecture}",
        *((f"engine's RepoDigests hold {computed}",) if local is not None else ()),
    )
    pushed = PushedImage(config.environment.registry, repository, tag, computed, 0.0)
    return ReuseDecision(
        ReusableImage(revision, pushed, architecture, checks), f"reuse {by_digest}"
    )


def _local_image(client: docker.DockerClient, reference: str) -> Any:
    try:
        return client.images.get(reference)
    except (ImageNotFound, NotFound):
        return None
    except APIError as exc:
        raise DockerError(
            "the Docker engine did not answer an image lookup",
            expected=f"the image {reference} or 'no such image'",
            found=str(exc)[:300],
            remedy="check the engine (`docker info`)",
        ) from exc


def _auth_config(config: DeployConfig) -> dict[str, str] | None:
    credentials = registry_credentials(config)
    return credentials.auth_config() if credentials else None


def reuse_image(
    client: docker.DockerClient, config: DeployConfig, reusable: ReusableImage
) -> tuple[BuiltImage, PushedImage]:
    """Make the reusable image available to the in-image gate without building it.

    The engine's own image is used when its RepoDigests hold the verified digest; otherwise
    the image is pulled by digest (the engine checks the content against it).
    """
    started = time.monotonic()
    pushed = reusable.pushed
    by_digest = pushed.by_digest
    local = _local_image(client, by_digest)
    if local is None:
        local = pull_by_digest(
            client,
            by_digest,
            remedy="check the engine can reach the registry, or deploy with a build "
            "(remove the tag from the registry)",
            auth_config=_auth_config(config),
        )
    if by_digest not in (local.attrs.get("RepoDigests") or []):
        raise RegistryError(
            f"the engine's image is not {by_digest}",
            expected=f"RepoDigests holding {by_digest}",
            found=", ".join(local.attrs.get("RepoDigests") or []) or "no RepoDigests",
            remedy="re-run the deploy; another writer may have moved the tag",
        )
    built = BuiltImage(
        image_id=str(local.id),
        reference=by_digest,
        revision=reusable.revision,
        architecture=reusable.architecture,
        build_s=0.0,
        vendor_s=0.0,
    )
    return built, PushedImage(
        pushed.registry, pushed.repository, pushed.tag, pushed.digest, time.monotonic() - started
    )
