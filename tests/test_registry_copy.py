"""Copy by digest between two real registries: the stack's anonymous one and a private
instance of the stack's authenticating registry (rehearsal/auth_registry.py, started here on a
free port with its own home, so the shared stack is neither needed to change nor disturbed).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker as docker_sdk
import pytest

from gangway.config import DeployConfig, RegistryAuthSpec, apply_env_file, load_config
from gangway.errors import DockerError, RegistryError, StackError
from rehearsal import auth_registry, mariadb_setup, system
from rehearsal import stack as rehearsal_stack
from tasks.docker_engine import pull_by_digest
from tasks.registry import (
    PushedImage,
    RegistryClient,
    push_image,
    registry_client,
    registry_credentials,
)
from tasks.registry_copy import CopyResult, copy_image

pytestmark = pytest.mark.stack

PASSWORD_ENV = "GANGWAY_TEST_COPY_REGISTRY_PASSWORD"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@pytest.fixture(scope="session")
def stack() -> object:
    """The shared stack as it runs: only read, never brought up (its `up` would start the new
    registry on the shared home); the registry under test is started below."""
    status = rehearsal_stack.status()
    for name in ("dockerd", "registry"):
        if not status.component(name).ok:
            pytest.skip(f"the shared stack's {name} is not running")
    apply_env_file()
    return status


@dataclass(frozen=True)
class Private:
    registry: str
    password: str
    home: Path
    pid: int | None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((system.LOOPBACK, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, stack: object) -> Iterator[Private]:
    """The authenticating registry, started by the stack's own code on a free port."""
    home = tmp_path_factory.mktemp("auth-registry")
    port = _free_port()
    started = auth_registry.ensure(home=home, at=port)
    password = mariadb_setup.read_stack_env(mariadb_setup.stack_env_path(home))[
        auth_registry.PASSWORD_ENV
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSWORD_ENV, password)
        yield Private(auth_registry.endpoint(port), password, home, started.pid)
    if started.pid:
        system.stop_pid(auth_registry.NAME, started.pid)


def at(
    config: DeployConfig,
    registry: str,
    auth: RegistryAuthSpec | None = None,
    repository: str | None = None,
) -> DeployConfig:
    """config pointed at another registry (and repository)."""
    environment = config.environment.model_copy(
        update={"registry": registry, "registry_auth": auth}
    )
    service = config.service
    if repository:
        build = service.build.model_copy(update={"repository": repository})
        service = service.model_copy(update={"build": build})
    return config.model_copy(update={"environment": environment, "service": service})


def private_config(config: DeployConfig, private: Private, **kwargs: str) -> DeployConfig:
    auth = RegistryAuthSpec(username=auth_registry.USER, password_env=PASSWORD_ENV)
    return at(config, private.registry, auth, **kwargs)


@pytest.fixture(scope="module")
def first_copy(
    private: Private, dev_config: DeployConfig, pushed_image: PushedImage
) -> CopyResult:
    """The reference image copied from the stack's registry into the private one."""
    result = copy_image(dev_config, private_config(dev_config, private), pushed_image.digest)
    print(
        f"\ncopy of the reference image 127.0.0.1:5000 → {private.registry}: "
        f"{result.seconds:.2f} s, {result.blobs_uploaded} blobs, {result.bytes} bytes"
    )
    return result


def test_the_authenticating_registry_component(private: Private) -> None:
    assert auth_registry.ready(int(private.registry.rsplit(":", 1)[1]))
    htpasswd = (private.home / auth_registry.NAME / "htpasswd").read_text()
    assert htpasswd.startswith(f"{auth_registry.USER}:$2b$") and private.password not in htpasswd
    env_file = mariadb_setup.stack_env_path(private.home)
    assert env_file.stat().st_mode & 0o777 == 0o600
    # A second ensure finds it running and keeps the password.
    again = auth_registry.ensure(home=private.home, at=int(private.registry.rsplit(":", 1)[1]))
    assert again.state == "running" and again.pid == private.pid
    assert auth_registry.ensure_password(private.home) == private.password


def test_copy_preserves_the_digest_and_pulls_by_digest(
    private: Private,
    dev_config: DeployConfig,
    pushed_image: PushedImage,
    first_copy: CopyResult,
    docker: docker_sdk.DockerClient,
) -> None:
    target = private_config(dev_config, private)
    assert first_copy.copied and first_copy.digest == pushed_image.digest
    assert first_copy.blobs_mounted == 0 and first_copy.blobs_uploaded >= 2
    assert first_copy.bytes > 0
    client = registry_client(target)
    try:
        body, _media_type, served = client.manifest("daily-report", pushed_image.digest) or (
            b"", "", ""
        )
    finally:
        client.close()
    assert served == pushed_image.digest
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == pushed_image.digest
    reference = f"{private.registry}/daily-report@{pushed_image.digest}"
    with pytest.raises(DockerError):  # the engine without the login is refused
        pull_by_digest(docker, reference, remedy="expected: login required")
    credentials = registry_credentials(target)
    assert credentials is not None
    image = pull_by_digest(docker, reference, "pull", auth_config=credentials.auth_config())
    try:
        assert reference in image.attrs["RepoDigests"]
    finally:
        docker.images.remove(reference)
    again = copy_image(dev_config, target, pushed_image.digest)
    assert (again.copied, again.blobs_uploaded, again.blobs_mounted, again.bytes) == (
        False, 0, 0, 0
    )


def test_copy_within_one_registry_mounts_every_blob(
    private: Private, dev_config: DeployConfig, pushed_image: PushedImage, first_copy: CopyResult
) -> None:
    source = private_config(dev_config, private)
    target = private_config(dev_config, private, repository="daily-report-mounted")
    result = copy_image(source, target, pushed_image.digest)
    assert result.copied and result.digest == pushed_image.digest
    assert (result.blobs_mounted, result.blobs_uploaded, result.bytes) == (
        first_copy.blobs_uploaded, 0, 0
    )
    client = registry_client(target)
    try:
        assert client.digest("daily-report-mounted", pushed_image.digest) == pushed_image.digest
    finally:
        client.close()


def _put_index(private: Private, manifest: dict[str, object], media_type: str, tag: str) -> str:
    body = json.dumps(manifest).encode()
    client = RegistryClient(
        private.registry,
        credentials=registry_credentials(
            private_config(load_config("dev"), private)
        ),
    )
    try:
        served = client.put_manifest("daily-report", tag, body, media_type)
    finally:
        client.close()
    assert served == f"sha256:{hashlib.sha256(body).hexdigest()}"
    return served


@pytest.mark.parametrize("kind", ["oci-index", "attestation-list"])
def test_an_index_or_attested_manifest_list_is_refused(
    kind: str,
    private: Private,
    dev_config: DeployConfig,
    pushed_image: PushedImage,
    first_copy: CopyResult,
) -> None:
    size = len(json.dumps({}))  # sizes are not what the refusal reads
    image = {"digest": pushed_image.digest, "size": size,
             "platform": {"architecture": "amd64", "os": "linux"}}
    if kind == "oci-index":
        media_type = OCI_INDEX
        image["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        document: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                       "manifests": [image]}
    else:
        media_type = DOCKER_LIST
        image["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
        attestation = {
            **image, "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": pushed_image.digest},
        }
        document = {"schemaVersion": 2, "mediaType": DOCKER_LIST,
                    "manifests": [image, attestation]}
    digest = _put_index(private, document, media_type, f"index-{kind}")
    source = private_config(dev_config, private)
    target = private_config(dev_config, private, repository="daily-report-index")
    with pytest.raises(RegistryError) as err:
        copy_image(source, target, digest)
    assert "single-platform image manifest" in err.value.remedy
    assert "--provenance=false" in err.value.remedy
    if kind == "attestation-list":
        assert "1 attestation entries" in err.value.message
    client = registry_client(target)
    try:  # refused before anything moved
        assert client.tags("daily-report-index") == []
        assert not client.has_manifest("daily-report-index", digest)
    finally:
        client.close()


def test_a_digest_missing_from_the_source_is_refused(
    private: Private, dev_config: DeployConfig
) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(RegistryError) as err:
        copy_image(dev_config, private_config(dev_config, private), missing)
    assert "not in the source registry" in err.value.message
    assert "127.0.0.1:5000/daily-report@" + missing in err.value.message


def test_a_wrong_or_missing_password_is_a_clear_error(
    private: Private,
    dev_config: DeployConfig,
    pushed_image: PushedImage,
    docker: docker_sdk.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = private_config(dev_config, private, repository="daily-report-wrong")
    wrong = "not-the-password-" + os.urandom(4).hex()
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    with pytest.raises(RegistryError) as err:
        copy_image(dev_config, target, pushed_image.digest)
    text = str(err.value)
    assert private.registry in text and PASSWORD_ENV in text and "refused the login" in text
    assert wrong not in text and private.password not in text
    # The engine's push with the same wrong login: the same boundary, the same remedy.
    tag = "wrong-login"
    docker.images.get(f"{pushed_image.registry}/{pushed_image.repository}:{pushed_image.tag}").tag(
        f"{private.registry}/daily-report-wrong", tag
    )
    try:
        with pytest.raises(RegistryError) as pushed:
            push_image(docker, private.registry, "daily-report-wrong", tag,
                       credentials=registry_credentials(target))
        assert PASSWORD_ENV in pushed.value.remedy and wrong not in str(pushed.value)
    finally:
        docker.images.remove(f"{private.registry}/daily-report-wrong:{tag}")
    anonymous = at(dev_config, private.registry, repository="daily-report-wrong")
    with pytest.raises(RegistryError) as err:
        copy_image(dev_config, anonymous, pushed_image.digest)
    assert "requires authentication" in err.value.message
    assert "registry_auth" in err.value.remedy
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(RegistryError) as err:
        copy_image(dev_config, target, pushed_image.digest)
    assert PASSWORD_ENV in err.value.expected and "not set" in err.value.found


def test_the_seed_push_logs_in_to_the_authenticating_registry(
    private: Private, dev_config: DeployConfig, docker: docker_sdk.DockerClient
) -> None:
    login = rehearsal_stack.registry_login(private_config(dev_config, private))
    assert login == (auth_registry.USER, private.password)
    try:
        with pytest.raises(StackError):  # no login: refused, as prod's seed would be
            rehearsal_stack.push_bootstrap(private.registry, "bootstrap-test", None)
        uri, digest, pushed = rehearsal_stack.push_bootstrap(
            private.registry, "bootstrap-test", login
        )
        assert pushed and digest.startswith("sha256:")
        assert rehearsal_stack.push_bootstrap(private.registry, "bootstrap-test", login) == (
            uri, digest, False
        )
    finally:
        docker.images.remove(f"{private.registry}/bootstrap-test:{rehearsal_stack.BOOTSTRAP_TAG}")
