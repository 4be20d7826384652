"""Source → image: vendor the service's dependencies for its platform and build the image."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from gangway.config import DeployConfig, gangway_home
from gangway.dockerfile import PREDEFINED_ARGS, base_images, declared_args
from gangway.errors import ConfigError, DockerError
from gangway.file_lock import locked
from tasks.source import SourceRevision

REVISION_LABEL = "org.opencontainers.image.revision"
DIRTY_LABEL = "dev.gangway.dirty"
SERVICE_LABEL = "dev.gangway.service"
# What else, besides the commit, decides the image: a reused image must have been built the
# same way (tasks/image_reuse.py), so environments with other build args never share one.
RECIPE_LABEL = "dev.gangway.recipe"
PIP_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
VENDOR_DIR = "vendor"
VENDOR_STAMP = ".gangway-vendor-stamp"
DEPS_ARG = "DEPS_IMAGE"
DEPS_REPOSITORY = "gangway-deps"


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


def build_recipe(config: DeployConfig, architecture: str) -> str:
    """A digest of the build inputs that are not in the commit: Dockerfile name, args, platform."""
    build = config.service.build
    recipe = {
        "dockerfile": build.dockerfile,
        "build_args": dict(sorted(build.build_args.items())),
        "architecture": architecture,
        "python": build.python,
        "vendor_requirements": build.vendor_requirements,
        "deps_dockerfile": build.deps_dockerfile,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def image_architecture(config: DeployConfig) -> str:
    """The one CPU architecture every function of the shared image declares, or ConfigError."""
    architectures = {fn.spec.architecture for fn in config.functions.values()}
    if len(architectures) != 1:
        raise ConfigError(
            "the functions of one image declare different architectures",
            expected="one architecture for every function that shares the image",
            found=", ".join(sorted(architectures)),
            remedy="set the same functions.*.architecture in service.toml",
        )
    return architectures.pop()


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
    stamp = target / VENDOR_STAMP
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
    shutil.copytree(
        cache, target, ignore=shutil.ignore_patterns(".complete"), copy_function=_link_or_copy
    )
    stamp.write_text(key)
    return time.monotonic() - started


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link a cached file into the context (same bytes, same mtime), else copy it.

    A deploy of a commit gets a fresh checkout folder: copying the ~50 MB cache into each one
    cost ~0.5 s per deploy. Nothing writes into vendor/ in place (the build only reads it).
    """
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed there
        shutil.copy2(source, target)


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
    architecture = image_architecture(config)
    check_build_args(config)
    # Vendoring rewrites <context>/vendor for the declared platform: two builds of one
    # checkout for different platforms would otherwise swap it under each other's upload.
    with _context_lock(config.build_context):
        return _build_locked(client, config, revision, tag, architecture)


def check_build_args(config: DeployConfig) -> None:
    """ConfigError unless every service.build.build_args name is declared (ARG) by a Dockerfile.

    The engine ignores a build arg no Dockerfile declares (a warning at most): a setting such
    as BASE_IMAGE would then change nothing without a word.
    """
    build = config.service.build
    if not build.build_args:
        return
    context = config.build_context
    names = [build.dockerfile] + ([build.deps_dockerfile] if build.deps_dockerfile else [])
    dockerfiles = [context / name for name in names if (context / name).is_file()]
    declared: set[str] = set(PREDEFINED_ARGS)
    for path in dockerfiles:
        declared |= set(declared_args(path.read_text(errors="replace")))
    unused = sorted(name for name in build.build_args if name not in declared)
    if unused:
        shown = ", ".join(str(p) for p in dockerfiles) or ", ".join(names)
        raise ConfigError(
            f"build argument(s) {', '.join(unused)} set in service.build.build_args but "
            "declared by no Dockerfile of the build",
            expected=f"`ARG {unused[0]}` in {shown}",
            found=f"no ARG {', '.join(unused)} in {shown} (the engine would ignore the setting)",
            remedy=f"declare `ARG {unused[0]}` in the Dockerfile (before the FROM that uses it), "
            f"or drop {unused[0]} from service.build.build_args",
        )


@contextmanager
def _context_lock(context: Path) -> Iterator[None]:
    name = hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:16]
    with locked(gangway_home() / "locks" / f"build-{name}.lock"):
        yield


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
    build_args = dict(config.service.build.build_args)
    deps = deps_image(client, config)
    if deps:
        build_args[DEPS_ARG] = deps
    labels = {
        REVISION_LABEL: revision.sha,
        DIRTY_LABEL: str(revision.dirty).lower(),
        SERVICE_LABEL: config.service.name,
        RECIPE_LABEL: build_recipe(config, architecture),
    }
    # The classic builder turns each entry of the API's `labels` into a LABEL step of its
    # own, each a container commit (~0.12 s here): one LABEL line appended to the Dockerfile
    # sets the same labels on the final stage in one step.
    line = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    with tempfile.TemporaryDirectory(prefix="gangway-build-") as tmp:
        labelled = Path(tmp) / "Dockerfile"
        labelled.write_text(dockerfile.read_text().rstrip("\n") + "\n" + line + "\n")
        image = _engine_build(
            client,
            dockerfile,
            path=str(context),
            dockerfile=str(labelled),
            tag=reference,
            buildargs=build_args,
            network_mode=config.service.build.network,
        )
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


def deps_image(client: docker.DockerClient, config: DeployConfig) -> str | None:
    """The local image of the vendored dependencies (built once per set), or None if unused.

    Keyed by the vendor stamp (requirements, platform, Python), the deps Dockerfile and the
    build args: while they are unchanged the image is reused, so a build sends only the code.
    """
    build = config.service.build
    if not build.deps_dockerfile:
        return None
    context = config.build_context
    dockerfile = context / build.deps_dockerfile
    if not dockerfile.exists():
        # A commit from before the split (deployed or promoted by SHA) has no deps Dockerfile:
        # its own Dockerfile still copies vendor/ from the context, so it builds as it did.
        return None
    stamp = context / VENDOR_DIR / VENDOR_STAMP
    if not build.vendor_requirements or not stamp.exists():
        raise ConfigError(
            "the dependencies image has no vendored dependencies to hold",
            expected=f"service.build.vendor_requirements set, vendored into {stamp.parent}",
            found=f"vendor_requirements={build.vendor_requirements!r}",
            remedy="set service.build.vendor_requirements in service.toml, or remove "
            "service.build.deps_dockerfile",
        )
    # A build arg or FROM naming a local image (the base) counts by its id: a base rebuilt
    # under the same tag must give a new deps image, as a plain build FROM it would.
    args = {k: _local_id(client, v) or v for k, v in sorted(build.build_args.items())}
    bases = [
        _local_id(client, image) or image
        for image in base_images(dockerfile.read_text(errors="replace"), dict(build.build_args))
    ]
    recipe = (
        stamp.read_bytes() + dockerfile.read_bytes() + json.dumps([args, bases]).encode()
    )
    tag = f"{DEPS_REPOSITORY}/{build.repository}:{hashlib.sha256(recipe).hexdigest()[:24]}"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        body = dockerfile.read_bytes()
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        tar.add(
            context / VENDOR_DIR,
            arcname=VENDOR_DIR,
            filter=lambda m: None if m.name.endswith("/" + VENDOR_STAMP) else m,
        )
    buffer.seek(0)
    _engine_build(
        client,
        dockerfile,
        fileobj=buffer,
        custom_context=True,
        tag=tag,
        buildargs=dict(build.build_args),
        network_mode=build.network,
    )
    return tag


def _local_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return str(client.images.get(reference).id)
    except DockerException:  # not an image reference, or not one the engine has
        return None


def _engine_build(client: docker.DockerClient, recipe: Path, **kwargs: Any) -> Any:
    """One classic-builder build through the engine API; its failures as DockerError."""
    try:
        image, _logs = client.images.build(rm=True, forcerm=True, **kwargs)
    except BuildError as exc:
        tail = "".join(chunk.get("stream", "") for chunk in exc.build_log)[-800:]
        raise DockerError(
            "the service image did not build",
            expected=f"{recipe} to build",
            found=f"{exc.msg}\n{tail}",
            remedy="fix the Dockerfile or the build args (is the base image present? does a "
            "RUN step need a package index the build cannot reach?)",
        ) from exc
    except APIError as exc:
        raise DockerError(
            "the Docker engine refused the build",
            expected="a build of the service image",
            found=str(exc)[:600],
            remedy="check the engine (`docker info`) and the base image named in build_args",
        ) from exc
    return image
