"""The pipeline → registry boundary: the digest deployed is the one the registry serves."""

from __future__ import annotations

import docker as docker_sdk
import pytest

from gangway.config import DeployConfig
from gangway.errors import RegistryError
from tasks.registry import PushedImage, RegistryClient

pytestmark = pytest.mark.stack


def test_pushed_digest_is_read_back_over_the_registry_api(
    docker: docker_sdk.DockerClient, dev_config: DeployConfig, pushed_image: PushedImage
) -> None:
    assert pushed_image.digest.startswith("sha256:") and len(pushed_image.digest) == 71
    client = RegistryClient(dev_config.environment.registry)
    try:
        assert client.digest(pushed_image.repository, pushed_image.tag) == pushed_image.digest
        # The engine recorded the same digest for the image it pushed.
        image = docker.images.get(
            f"{pushed_image.registry}/{pushed_image.repository}:{pushed_image.tag}"
        )
        assert pushed_image.by_digest in image.attrs["RepoDigests"]
    finally:
        client.close()


def test_retag_by_digest_promotes_without_rebuild(
    dev_config: DeployConfig, pushed_image: PushedImage
) -> None:
    client = RegistryClient(dev_config.environment.registry)
    try:
        digest = client.tag(pushed_image.repository, pushed_image.digest, "promoted-test")
        assert digest == pushed_image.digest
        assert client.digest(pushed_image.repository, "promoted-test") == pushed_image.digest
        missing = "sha256:" + "0" * 64
        assert client.digest(pushed_image.repository, missing) is None
        with pytest.raises(RegistryError) as err:
            client.tag(pushed_image.repository, missing, "nope")
        assert "not in the registry" in str(err.value)
    finally:
        client.close()


def test_registry_down_is_a_clear_error() -> None:
    client = RegistryClient("127.0.0.1:1")
    with pytest.raises(RegistryError) as err:
        client.ping()
    assert "did not answer" in str(err.value) and "make stack" in err.value.remedy
