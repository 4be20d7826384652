"""The pipeline → OCI registry boundary: push through the engine, read back over the registry API.

The digest the registry serves for a tag is the identity gangway deploys (`repo@sha256:…`),
so it is always read back from the registry itself, never trusted from the push output alone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker
import httpx
from docker.errors import APIError

from gangway.config import DeployConfig
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
class RegistryCredentials:
    """A registry login; the password came from password_env and is never shown."""

    username: str
    password_env: str
    password: str = field(repr=False)

    def auth_config(self) -> dict[str, str]:
        """The Docker engine's auth_config for push and pull."""
        return {"username": self.username, "password": self.password}


def registry_credentials(config: DeployConfig) -> RegistryCredentials | None:
    """The environment's registry login (environment.registry_auth), None when anonymous."""
    auth = config.environment.registry_auth
    if auth is None:
        return None
    password = os.environ.get(auth.password_env, "")
    if not password:
        raise RegistryError(
            f"no password for the registry {config.environment.registry}",
            expected=f"{auth.password_env} set (environment.registry_auth.password_env)",
            found="not set",
            remedy=f"export {auth.password_env}=… (the rehearsal stack writes it to stack.env)",
        )
    return RegistryCredentials(auth.username, auth.password_env, password)


def registry_client(config: DeployConfig, *, timeout_s: float = 30.0) -> RegistryClient:
    """A RegistryClient for the environment's registry, logged in as the environment says."""
    return RegistryClient(
        config.environment.registry, credentials=registry_credentials(config), timeout_s=timeout_s
    )


CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


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

    def __init__(
        self,
        registry: str,
        *,
        credentials: RegistryCredentials | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        scheme = "http" if registry.startswith(LOOPBACK) else "https"
        self._http = httpx.Client(
            base_url=f"{scheme}://{registry}", timeout=timeout_s, trust_env=False
        )
        # The Authorization header that last worked (Basic, or a Bearer token for its scope).
        self._authorization: str | None = None

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
        if self._authorization:
            headers["Authorization"] = self._authorization
        try:
            return self._http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"the registry {self.registry} did not answer",
                expected=f"{method} {path.split('?', 1)[0]} to answer",
                found=f"{type(exc).__name__}: {exc}",
                remedy="start the registry (`make stack`) or fix environment.registry",
            ) from exc

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """One request; on 401 log in as the registry's challenge asks (Basic or Bearer), once.

        A streamed body cannot be sent twice: callers streaming one authenticate first."""
        response = self._send(method, path, **kwargs)
        if response.status_code != 401:
            return response
        self._authorization = self._login(response.headers.get("WWW-Authenticate", ""), path)
        response = self._send(method, path, **kwargs)
        if response.status_code == 401:
            raise self._refused(f"HTTP 401 again after logging in: {response.text[:200]}")
        return response

    def _refused(self, found: str) -> RegistryError:
        who = self.credentials
        if who is None:
            return RegistryError(
                f"the registry {self.registry} requires authentication",
                expected="anonymous access, or credentials in environment.registry_auth",
                found=found,
                remedy="set [environment.registry_auth] username and password_env (the "
                "variable holding the password) for this environment",
            )
        return RegistryError(
            f"the registry {self.registry} refused the login of {who.username!r}",
            expected=f"the password in {who.password_env} accepted for {who.username!r}",
            found=found,
            remedy=f"check {who.password_env} and environment.registry_auth.username (for "
            "ECR: a fresh `aws ecr get-login-password`); the rehearsal stack's is in stack.env",
        )

    def _login(self, challenge: str, path: str) -> str:
        """The Authorization header answering a 401's WWW-Authenticate challenge."""
        scheme = challenge.split(" ", 1)[0].lower()
        who = self.credentials
        if scheme == "basic" or (scheme == "" and who is not None):
            if who is None:
                raise self._refused(f"HTTP 401 with WWW-Authenticate: {challenge[:200]}")
            pair = f"{who.username}:{who.password}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if scheme != "bearer":
            raise self._refused(f"HTTP 401 with an unknown challenge {challenge[:200]!r}")
        params = dict(CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise self._refused(f"a Bearer challenge without a realm: {challenge[:200]!r}")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        auth = httpx.BasicAuth(who.username, who.password) if who else None
        try:
            answer = httpx.get(realm, params=query, auth=auth, timeout=30, trust_env=False)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"the token service of {self.registry} did not answer",
                expected=f"GET {realm} to issue a token",
                found=f"{type(exc).__name__}: {exc}",
                remedy="check network access to the registry's token realm",
            ) from exc
        if answer.status_code != 200:
            raise self._refused(f"token service {realm}: HTTP {answer.status_code}")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise self._refused(f"token service {realm} answered without a token")
        return f"Bearer {token}"

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


    # ----------------------------------------------------------------- copy by digest

    def login(self, repository: str, actions: str = "pull,push") -> None:
        """Authenticate for repository before a request whose body cannot be sent twice."""
        response = self._send("GET", "/v2/")
        if response.status_code == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer") and "scope=" not in challenge:
                challenge += f',scope="repository:{repository}:{actions}"'
            self._authorization = self._login(challenge, "/v2/")
            if self._send("GET", "/v2/").status_code == 401:
                raise self._refused("HTTP 401 on GET /v2/ after logging in")

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether repository holds the blob (HEAD)."""
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise self._failed(f"HEAD blob {repository}@{digest}", response)

    def has_manifest(self, repository: str, digest: str) -> bool:
        """Whether repository holds the manifest digest (HEAD)."""
        response = self._request(
            "HEAD", f"/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES}
        )
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise self._failed(f"HEAD manifest {repository}@{digest}", response)

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> str | None:
        """Mount a blob from another repository of this registry: None when mounted, else
        the upload URL the registry opened instead (it may decline a mount)."""
        response = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source_repository}"
        )
        if response.status_code == 201:
            return None
        if response.status_code == 202:
            return response.headers["Location"]
        raise self._failed(f"mount {source_repository}@{digest} into {repository}", response)

    def start_upload(self, repository: str) -> str:
        """Open a blob upload; returns its URL."""
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/")
        if response.status_code != 202:
            raise self._failed(f"starting an upload to {repository}", response)
        return response.headers["Location"]

    def upload_blob(
        self, repository: str, location: str, digest: str, chunks: Iterator[bytes]
    ) -> int:
        """Stream chunks into the upload at location (PATCH), then close it as digest (PUT),
        checking the streamed bytes hash to digest first; returns the bytes sent."""
        hasher = hashlib.sha256()
        sent = 0

        def counted() -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                hasher.update(chunk)
                sent += len(chunk)
                yield chunk

        response = self._send(
            "PATCH",
            location,
            content=counted(),
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 202:
            raise self._failed(f"uploading {digest} to {repository}", response)
        location = response.headers.get("Location", location)
        found = f"sha256:{hasher.hexdigest()}"
        if found != digest:
            self._send("DELETE", location)
            raise RegistryError(
                f"the blob read for {digest} hashes to something else",
                expected=digest,
                found=found,
                remedy="the source registry served other bytes: check its storage",
            )
        separator = "&" if "?" in location else "?"
        response = self._request("PUT", f"{location}{separator}digest={digest}")
        if response.status_code != 201:
            raise self._failed(f"closing the upload of {digest} to {repository}", response)
        return sent

    def stream_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """The bytes of a blob, streamed in chunks (redirects to storage followed)."""
        self.has_blob(repository, digest)  # authenticates before the stream opens
        request = self._http.build_request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            headers={"Authorization": self._authorization} if self._authorization else {},
        )
        try:
            response = self._http.send(request, stream=True, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"the registry {self.registry} did not answer",
                expected=f"GET blob {digest}",
                found=f"{type(exc).__name__}: {exc}",
                remedy="check the source registry",
            ) from exc
        try:
            if response.status_code != 200:
                response.read()
                raise self._failed(f"GET blob {repository}@{digest}", response)
            yield from response.iter_bytes(chunk_size=1 << 20)
        finally:
            response.close()

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT the manifest's exact bytes under reference; returns Docker-Content-Digest."""
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (201, 202):
            raise self._failed(f"PUT manifest {repository}:{reference}", response)
        return response.headers.get("Docker-Content-Digest", "")

    def _failed(self, what: str, response: httpx.Response) -> RegistryError:
        return RegistryError(
            f"{what} failed on {self.registry}",
            expected="the registry to accept it",
            found=f"HTTP {response.status_code}: {response.text[:300]}",
            remedy="check the registry's log and that the login may push to this repository",
        )

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


def _push_remedy(error: str, registry: str, credentials: RegistryCredentials | None) -> str:
    if "unauthorized" in error.lower() or "authentication required" in error.lower():
        if credentials is None:
            return f"{registry} requires a login: set [environment.registry_auth]"
        return (
            f"{registry} refused {credentials.username!r}: check {credentials.password_env} "
            "and environment.registry_auth.username"
        )
    return "check the registry is up and accepts pushes (`make stack`)"


def push_image(
    client: docker.DockerClient,
    registry: str,
    repository: str,
    tag: str,
    *,
    credentials: RegistryCredentials | None = None,
) -> PushedImage:
    """Push registry/repository:tag through the engine; read its digest back from the registry."""
    started = time.monotonic()
    reported = ""
    auth = credentials.auth_config() if credentials else None
    try:
        for event in client.images.push(
            f"{registry}/{repository}", tag=tag, stream=True, decode=True, auth_config=auth
        ):
            if "error" in event:
                raise RegistryError(
                    f"pushing {registry}/{repository}:{tag} failed",
                    expected="the engine to push every layer",
                    found=str(event.get("errorDetail", event["error"]))[:500],
                    remedy=_push_remedy(str(event["error"]), registry, credentials),
                )
            reported = event.get("aux", {}).get("Digest", reported)
    except APIError as exc:
        raise RegistryError(
            f"the engine refused to push {registry}/{repository}:{tag}",
            expected="a push to the registry",
            found=str(exc)[:500],
            remedy="check the image exists locally and the registry is reachable",
        ) from exc
    reader = RegistryClient(registry, credentials=credentials)
    try:
        served = reader.digest(repository, tag)
    finally:
        reader.close()
    if not served or (reported and served != reported):
        raise RegistryError(
            f"the registry does not serve what was pushed for {repository}:{tag}",
            expected=reported or "a manifest digest",
            found=served or "no manifest",
            remedy="re-run the push; another writer may have moved the tag",
        )
    return PushedImage(registry, repository, tag, served, time.monotonic() - started)
