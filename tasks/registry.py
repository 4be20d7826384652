"""The pipeline → OCI registry boundary: push through the engine, read back over the registry API.

The digest the registry serves for a tag is the identity gangway deploys (`repo@sha256:…`),
so it is always read back from the registry itself, never trusted from the push output alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import docker
import httpx
from docker.errors import APIError

from gangway.errors import RegistryError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
LOOPBACK = ("127.", "localhost", "[::1]")


@dataclass(frozen=True)
class PushedImage:
    """An image in the registry, identified by its manifest digest."""

    registry: str
    repository: str
    tag: str
    digest: str
    push_s: float

    @property
    def by_digest(self) -> str:
        """The immutable reference functions are deployed with."""
        return f"{self.registry}/{self.repository}@{self.digest}"


class RegistryClient:
    """Minimal OCI distribution API client over httpx."""

    def __init__(self, registry: str, *, timeout_s: float = 30.0) -> None:
        self.registry = registry
        scheme = "http" if registry.startswith(LOOPBACK) else "https"
        self._http = httpx.Client(base_url=f"{scheme}://{registry}", timeout=timeout_s)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"the registry {self.registry} did not answer",
                expected=f"{method} {path} to answer",
                found=f"{type(exc).__name__}: {exc}",
                remedy="start the registry (`make stack`) or fix environment.registry",
            ) from exc

    def ping(self) -> None:
        """Raise RegistryError unless the registry speaks the distribution API."""
        response = self._request("GET", "/v2/")
        if response.status_code not in (200, 401):
            raise RegistryError(
                f"{self.registry} is not an OCI registry",
                expected="GET /v2/ → 200 or 401",
                found=f"HTTP {response.status_code}",
                remedy="fix environment.registry",
            )

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str, str] | None:
        """(body, media type, digest) of a manifest by tag or digest, or None when absent."""
        response = self._get(
            f"/v2/{repository}/manifests/{reference}",
            f"manifest {repository}:{reference}",
            headers={"Accept": MANIFEST_TYPES},
        )
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        return response.content, response.headers.get("Content-Type", ""), digest

    def blob(self, repository: str, digest: str) -> bytes | None:
        """The content of a blob (e.g. an image's config) by digest, or None when absent."""
        response = self._get(
            f"/v2/{repository}/blobs/{digest}", f"blob {repository}@{digest}", follow_redirects=True
        )
        return None if response is None else response.content

    def _get(self, path: str, what: str, **kwargs: object) -> httpx.Response | None:
        """GET path: the response, None on 404, a RegistryError naming what on anything else."""
        response = self._request("GET", path, **kwargs)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(
                f"reading {what} failed",
                expected=f"HTTP 200 with the {what.split()[0]}",
                found=f"HTTP {response.status_code}: {response.text[:300]}",
                remedy="check the registry's log and credentials",
            )
        return response

    def digest(self, repository: str, reference: str) -> str | None:
        """The manifest digest the registry serves for a tag (or confirms for a digest)."""
        found = self.manifest(repository, reference)
        return found[2] if found else None

    def tag(self, repository: str, digest: str, tag: str) -> str:
        """Point tag at an existing manifest (promotion without rebuild); returns the digest."""
        found = self.manifest(repository, digest)
        if found is None:
            raise RegistryError(
                f"{repository}@{digest} is not in the registry",
                expected="the manifest to exist",
                found="HTTP 404",
                remedy="push the image first, or check the digest in the ledger",
            )
        body, media_type, _ = found
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            content=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (201, 202):
            raise RegistryError(
                f"tagging {repository}@{digest} as {tag} failed",
                expected="HTTP 201",
                found=f"HTTP {response.status_code}: {response.text[:300]}",
                remedy="check the registry allows manifest PUTs for this repository",
            )
        return response.headers.get("Docker-Content-Digest", digest)


    def tags(self, repository: str) -> list[str]:
        """Every tag of repository (following the API's pages); [] when it does not exist."""
        found: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n=1000"
        while path:
            response = self._get(path, f"tags of {repository}")
            if response is None:
                return found
            found.extend(response.json().get("tags") or [])
            path = _next_page(response.headers.get("Link", ""))
        return found

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest (and so every tag on it) by digest; False when it was already gone."""
        response = self._request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            headers={"Accept": MANIFEST_TYPES},
        )
        if response.status_code == 404:
            return False
        if response.status_code != 202:
            disabled = response.status_code == 405
            raise RegistryError(
                f"deleting {repository}@{digest} failed",
                expected="HTTP 202 (manifest deleted)",
                found=f"HTTP {response.status_code}: {response.text[:300]}",
                remedy="enable deletes in the registry (storage.delete.enabled: true)"
                if disabled
                else "check the registry's log and credentials",
            )
        return True


def _next_page(link: str) -> str | None:
    """The path of the next page from an RFC 5988 Link header (`<...>; rel="next"`)."""
    if 'rel="next"' not in link:
        return None
    start, end = link.find("<"), link.find(">")
    return link[start + 1 : end] if 0 <= start < end else None


def push_image(
    client: docker.DockerClient, registry: str, repository: str, tag: str
) -> PushedImage:
    """Push registry/repository:tag through the engine; read its digest back from the registry."""
    started = time.monotonic()
    reported = ""
    try:
        for event in client.images.push(
            f"{registry}/{repository}", tag=tag, stream=True, decode=True
        ):
            if "error" in event:
                raise RegistryError(
                    f"pushing {registry}/{repository}:{tag} failed",
                    expected="the engine to push every layer",
                    found=str(event.get("errorDetail", event["error"]))[:500],
                    remedy="check the registry is up and accepts pushes (`make stack`)",
                )
            reported = event.get("aux", {}).get("Digest", reported)
    except APIError as exc:
        raise RegistryError(
            f"the engine refused to push {registry}/{repository}:{tag}",
            expected="a push to the registry",
            found=str(exc)[:500],
            remedy="check the image exists locally and the registry is reachable",
        ) from exc
    registry_client = RegistryClient(registry)
    try:
        served = registry_client.digest(repository, tag)
    finally:
        registry_client.close()
    if not served or (reported and served != reported):
        raise RegistryError(
            f"the registry does not serve what was pushed for {repository}:{tag}",
            expected=reported or "a manifest digest",
            found=served or "no manifest",
            remedy="re-run the push; another writer may have moved the tag",
        )
    return PushedImage(registry, repository, tag, served, time.monotonic() - started)
