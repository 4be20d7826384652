"""Source → image: vendor the service's dependencies for its platform and build the image."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, BuildError

from gangway.config import DeployConfig, gangway_home
from gangway.errors import ConfigError, DockerError
from tasks.source import SourceRevision

REVISION_LABEL = "org.opencontainers.image.revision"
DIRTY_LABEL = "dev.gangway.dirty"
SERVICE_LABEL = "dev.gangway.service"
PIP_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
VENDOR_DIR = "vendor"


@dataclass(frozen=True)
class BuiltImage:
    """A locally built image: its engine id, tag, and the revision it carries as a label."""

    image_id: str
    reference: str
    revision: SourceRevision
    architecture: str
    build_s: float
    vendor_s: float

    @property
    def tag(self) -> str:
        """The tag part of the reference (what is pushed)."""
        return self.reference.rsplit(":", 1)[1]


def vendor_requirements(config: DeployConfig, architecture: str) -> float:
    """Install the service's requirements into <context>/vendor for the function platform.

    Each (requirements, platform, Python) set is installed once into a cache under
    GANGWAY_HOME and copied into the context with its timestamps, so switching platform and
    back gives byte-identical files (pip's bytecode embeds source mtimes) and so the same
    image digest. A stamp file makes the unchanged case free.
    """
    build = config.service.build
    if not build.vendor_requirements:
        return 0.0
    context = config.build_context
    requirements = context / build.vendor_requirements
    if not requirements.exists():
        raise ConfigError(
            "the service's requirements file does not exist",
            expected=str(requirements),
            found="no such file",
            remedy="fix service.build.vendor_requirements in service.toml",
        )
    target = context / VENDOR_DIR
    stamp = target / ".gangway-vendor-stamp"
    key = hashlib.sha256(
        requirements.read_bytes() + f"|{architecture}|{build.python}".encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == key:
        return 0.0
    started = time.monotonic()
    cache = gangway_home() / "vendor" / key
    if not (cache / ".complete").exists():
        _pip_install(requirements, cache, architecture, build.python)
        (cache / ".complete").write_text(key)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(cache, target, ignore=shutil.ignore_patterns(".complete"))
    stamp.write_text(key)
    return time.monotonic() - started


def _pip_install(requirements: Path, target: Path, architecture: str, python: str) -> None:
    shutil.rmtree(target, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--platform",
        PIP_PLATFORM[architecture],
        "--python-version",
        python,
        "-r",
        str(requirements),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise DockerError(
            "vendoring the service's dependencies failed",
            expected=f"wheels for {PIP_PLATFORM[architecture]} / Python {python}",
            found=(done.stderr or done.stdout).strip()[-600:],
            remedy=f"check {requirements} names packages with binary wheels for that platform",
        )


def build_image(
    client: docker.DockerClient,
    config: DeployConfig,
    revision: SourceRevision,
    tag: str | None = None,
) -> BuiltImage:
    """Vendor dependencies, then build the service image labelled with the commit SHA.

    The tag defaults to the revision's (the SHA); a variant build passes its own.
    """
    architectures = {fn.spec.architecture for fn in config.functions.values()}
    if len(architectures) != 1:
        raise ConfigError(
            "the functions of one image declare different architectures",
            expected="one architecture for every function that shares the image",
            found=", ".join(sorted(architectures)),
            remedy="set the same functions.*.architecture in service.toml",
        )
    architecture = architectures.pop()
    # Vendoring rewrites <context>/vendor for the declared platform: two builds of one
    # checkout for different platforms would otherwise swap it under each other's upload.
    with _context_lock(config.build_context):
        return _build_locked(client, config, revision, tag, architecture)


@contextmanager
def _context_lock(context: Path) -> Iterator[None]:
    locks = gangway_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:16]
    with (locks / f"build-{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_locked(
    client: docker.DockerClient,
    config: DeployConfig,
    revision: SourceRevision,
    tag: str | None,
    architecture: str,
) -> BuiltImage:
    vendor_s = vendor_requirements(config, architecture)
    context = config.build_context
    dockerfile = context / config.service.build.dockerfile
    if not dockerfile.exists():
        raise ConfigError(
            "the service's Dockerfile does not exist",
            expected=str(dockerfile),
            found="no such file",
            remedy="fix service.build.context / service.build.dockerfile in service.toml",
        )
    reference = f"{config.image_repository}:{tag or revision.tag}"
    started = time.monotonic()
    try:
        image, _logs = client.images.build(
            path=str(context),
            dockerfile=config.service.build.dockerfile,
            tag=reference,
            buildargs=dict(config.service.build.build_args),
            labels={
                REVISION_LABEL: revision.sha,
                DIRTY_LABEL: str(revision.dirty).lower(),
                SERVICE_LABEL: config.service.name,
            },
            rm=True,
            forcerm=True,
        )
    except BuildError as exc:
        tail = "".join(chunk.get("stream", "") for chunk in exc.build_log)[-800:]
        raise DockerError(
            "the service image did not build",
            expected=f"{dockerfile} to build",
            found=f"{exc.msg}\n{tail}",
            remedy="fix the Dockerfile or the build args (is the base image present?)",
        ) from exc
    except APIError as exc:
        raise DockerError(
            "the Docker engine refused the build",
            expected="a build of the service image",
            found=str(exc)[:600],
            remedy="check the engine (`docker info`) and the base image named in build_args",
        ) from exc
    if tag is None and revision.dirty:
        # Two dirty trees of one commit must never share a tag: the gate and the push read
        # the image by tag, so a concurrent build of another tree would swap it under them.
        unique = f"{revision.tag}-{image.id.split(':')[-1][:12]}"
        image.tag(config.image_repository, unique)
        reference = f"{config.image_repository}:{unique}"
    return BuiltImage(
        image_id=image.id,
        reference=reference,
        revision=revision,
        architecture=architecture,
        build_s=time.monotonic() - started,
        vendor_s=vendor_s,
    )
