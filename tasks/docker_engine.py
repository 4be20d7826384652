"""The pipeline → Docker Engine boundary: one client, one error type."""

from __future__ import annotations

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.models.images import Image

from gangway.errors import DockerError


def docker_client(timeout: int = 300) -> docker.DockerClient:
    """A client for the engine at DOCKER_HOST (or the local socket), proven reachable by a ping."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerError(
            "the Docker engine is not reachable",
            expected="a Docker engine answering at DOCKER_HOST or /var/run/docker.sock",
            found=str(exc).splitlines()[0][:300],
            remedy="start dockerd (`make stack` starts one) or set DOCKER_HOST",
        ) from exc
    return client


def pull_by_digest(
    client: docker.DockerClient,
    reference: str,
    remedy: str,
    auth_config: dict[str, str] | None = None,
) -> Image:
    """Pull repository@sha256:… into the engine (which checks the content against the digest);
    auth_config: the registry's login (tasks/registry.RegistryCredentials.auth_config())."""
    try:
        return client.images.pull(reference, auth_config=auth_config)
    except (APIError, ImageNotFound) as exc:
        raise DockerError(
            f"the engine could not pull {reference}",
            expected="a pull by digest from the registry",
            found=str(exc)[:500],
            remedy=remedy,
        ) from exc
