"""Copy an image between registries by digest, through the OCI distribution API.

Never rebuilt, never re-serialized: the manifest's bytes are what the digest names, so they
are fetched, checked against the digest, and PUT as they are, after every blob they reference
is in the target (mounted across repositories within one registry, streamed otherwise).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from gangway.config import DeployConfig
from gangway.errors import RegistryError
from tasks.registry import RegistryClient, registry_client

IMAGE_MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ATTESTATION = "attestation-manifest"
SINGLE_PLATFORM_REMEDY = (
    "Lambda accepts a single-platform image manifest only: rebuild and push with "
    "`docker buildx build --provenance=false --sbom=false --platform linux/amd64` (or arm64), "
    "or copy one platform's manifest (its own digest) instead of the index"
)


@dataclass(frozen=True)
class CopyResult:
    """What a copy did: copied=False when the target already held the manifest."""

    digest: str
    copied: bool
    blobs_mounted: int
    blobs_uploaded: int
    bytes: int
    seconds: float


def copy_image(source: DeployConfig, target: DeployConfig, digest: str) -> CopyResult:
    """Copy repository@digest from source's registry to target's, the digest preserved."""
    began = time.monotonic()
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise RegistryError(
            f"{digest!r} is not a manifest digest",
            expected="sha256: and 64 hex digits",
            found=digest,
            remedy="name the image by the digest the ledger recorded",
        )
    from_repo, to_repo = source.service.build.repository, target.service.build.repository
    reader, writer = registry_client(source), registry_client(target)
    try:
        if writer.has_manifest(to_repo, digest):
            return CopyResult(digest, False, 0, 0, 0, time.monotonic() - began)
        body, media_type = _source_manifest(reader, from_repo, digest)
        same_registry = reader.registry == writer.registry
        writer.login(to_repo, "pull,push")
        mounted = uploaded = sent = 0
        for blob in _blobs(body):
            if writer.has_blob(to_repo, blob):
                continue
            location = writer.mount_blob(to_repo, blob, from_repo) if same_registry else None
            if same_registry and location is None:
                mounted += 1
                continue
            location = location or writer.start_upload(to_repo)
            sent += writer.upload_blob(to_repo, location, blob, reader.stream_blob(from_repo, blob))
            uploaded += 1
        served = writer.put_manifest(to_repo, digest, body, media_type)
        if served != digest:
            raise RegistryError(
                f"the target registry {writer.registry} stored {to_repo} under another digest",
                expected=f"Docker-Content-Digest: {digest}",
                found=f"Docker-Content-Digest: {served or '(none)'}",
                remedy="the target rewrote the manifest: use a registry that stores manifests "
                "as pushed (any OCI-conformant one, ECR included)",
            )
        return CopyResult(digest, True, mounted, uploaded, sent, time.monotonic() - began)
    finally:
        reader.close()
        writer.close()


def _source_manifest(reader: RegistryClient, repository: str, digest: str) -> tuple[bytes, str]:
    """The manifest's exact bytes and media type, checked against digest; indexes refused."""
    found = reader.manifest(repository, digest)
    where = f"{reader.registry}/{repository}@{digest}"
    if found is None:
        raise RegistryError(
            f"{where} is not in the source registry",
            expected="the manifest the source environment deployed",
            found="HTTP 404",
            remedy="check the digest (the ledger's record of the source deploy) and that the "
            "source environment's registry still holds it (not pruned)",
        )
    body, media_type, _ = found
    hashed = f"sha256:{hashlib.sha256(body).hexdigest()}"
    if hashed != digest:
        raise RegistryError(
            f"the manifest served for {where} does not hash to its digest",
            expected=digest,
            found=hashed,
            remedy="the source registry served other bytes: do not copy from it",
        )
    document = _json(body, where)
    media_type = media_type.split(";", 1)[0].strip() or str(document.get("mediaType", ""))
    if media_type in INDEXES or "manifests" in document:
        attestations = [
            m for m in document.get("manifests", [])
            if (m.get("annotations") or {}).get("vnd.docker.reference.type") == ATTESTATION
        ]
        kind = "a manifest list" if "docker" in media_type else "an OCI index"
        extra = f" with {len(attestations)} attestation entries" if attestations else ""
        raise RegistryError(
            f"{where} is {kind}{extra}, not an image manifest",
            expected="a single-platform image manifest (" + " or ".join(IMAGE_MANIFESTS) + ")",
            found=f"{media_type}, {len(document.get('manifests', []))} entries{extra}",
            remedy=SINGLE_PLATFORM_REMEDY,
        )
    if media_type not in IMAGE_MANIFESTS:
        raise RegistryError(
            f"{where} has a media type Lambda does not run",
            expected=" or ".join(IMAGE_MANIFESTS),
            found=media_type or "(none)",
            remedy=SINGLE_PLATFORM_REMEDY,
        )
    return body, media_type


def _json(body: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RegistryError(
            f"the manifest of {where} is not JSON",
            expected="a JSON image manifest",
            found=str(exc),
            remedy="check the source registry",
        ) from exc
    if not isinstance(document, dict):
        raise RegistryError(
            f"the manifest of {where} is not a JSON object",
            expected="a JSON image manifest",
            found=type(document).__name__,
            remedy="check the source registry",
        )
    return document


def _blobs(body: bytes) -> list[str]:
    """The config and layer digests a manifest references (foreign layers are not ours to copy)."""
    document = json.loads(body)
    blobs = [document["config"]["digest"]]
    for layer in document.get("layers", []):
        if layer.get("urls") or "nondistributable" in str(layer.get("mediaType", "")):
            continue
        blobs.append(layer["digest"])
    return list(dict.fromkeys(blobs))
