"""The rehearsal stack's AWS Lambda Python 3.11 base image, built locally (nothing is pulled).

debootstrap makes a Debian bookworm root filesystem (cached as a tarball), the engine imports
it, and a small Dockerfile (``rehearsal/base/``) adds what the official Lambda image carries:
the runtime interface client and boto3 in /var/runtime, pip, the Runtime Interface Emulator
(RIE) and the entry point script. The image is labelled with a hash of that recipe and rebuilt
only when the recipe changes. It is also tagged with the official image's name, so a
Dockerfile written for ``public.ecr.aws/lambda/python:3.11`` builds unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gangway.errors import StackError
from rehearsal import package_index
from rehearsal.system import docker_client, home_dir, log_path, log_tail

if TYPE_CHECKING:
    import docker

BASE_IMAGE = "gangway-rehearsal/lambda-python:3.11"
# The name Dockerfiles written for AWS's own image start FROM; no image can be pulled here.
OFFICIAL_IMAGE = "public.ecr.aws/lambda/python:3.11"
ROOTFS_REPOSITORY = "gangway-rehearsal/rootfs"
RECIPE_LABEL = "gangway.base.recipe"

SUITE = "bookworm"  # Debian 12: its python3 is 3.11, the Lambda runtime being mimicked
VARIANT = "minbase"
# libstdc++6 is named because awslambdaric's C extension links it (minbase has it via apt).
INCLUDE = ("python3", "ca-certificates", "tzdata", "libstdc++6")
# The RIE ships inside the SAM CLI wheel; pinned so the recipe hash means one binary.
RIE_SOURCE = "aws-sam-cli==1.170.0"
RIE_MEMBER = "samcli/local/rapid/aws-lambda-rie-x86_64"
RIE_NAME = "aws-lambda-rie-x86_64"
# pip as the official image has it: a wheel from the host's index (pinned: the recipe hash
# covers it), installed into the image's Python.
PIP_SOURCE = "pip==25.1.1"

RECIPE_DIR = Path(__file__).resolve().parent / "base"
RECIPE_FILES = ("Dockerfile", "lambda-entrypoint.sh", "runtime-requirements.txt")


@dataclass
class BaseImageResult:
    """What ensure_base_image did: the image, whether it was reused, and where time went."""

    tag: str
    image_id: str
    recipe: str
    state: str  # "reused" | "built"
    rie: Path
    steps: dict[str, float] = field(default_factory=dict)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rootfs_recipe() -> str:
    """A short hash of the debootstrap inputs (suite, variant, packages)."""
    text = f"{SUITE}|{VARIANT}|{','.join(INCLUDE)}"
    return _sha256(text.encode())[:16]


def recipe_hash() -> str:
    """Hash of everything the base image is made from; stored as the image label."""
    digest = hashlib.sha256()
    digest.update(f"rootfs={rootfs_recipe()}|rie={RIE_SOURCE}:{RIE_MEMBER}\n".encode())
    digest.update(f"pip={PIP_SOURCE}\n{package_index.pip_conf()}".encode())
    for name in RECIPE_FILES:
        path = RECIPE_DIR / name
        digest.update(f"{name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def rootfs_tarball(home: Path | None = None) -> Path:
    """Where the cached root filesystem tarball lives."""
    return home_dir("cache", home) / f"rootfs-{SUITE}-{rootfs_recipe()}.tar"


def rie_host_path(home: Path | None = None) -> Path:
    """The host copy of the RIE that the invoke bridge bind-mounts or runs."""
    return home_dir("rie", home) / RIE_NAME


def _image_label(client: docker.DockerClient) -> tuple[str | None, str | None]:
    import docker

    try:
        image = client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return None, None
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return image.id, labels.get(RECIPE_LABEL)


def base_image_state(client: docker.DockerClient | None = None) -> str:
    """'current', 'stale' (recipe changed) or 'missing'."""
    client = client or docker_client()
    image_id, label = _image_label(client)
    if image_id is None:
        return "missing"
    return "current" if label == recipe_hash() else "stale"


def rootfs_available(home: Path | None = None) -> bool:
    """True when no debootstrap run is needed (image current or rootfs tarball cached)."""
    if rootfs_tarball(home).exists():
        return True
    from rehearsal.system import docker_ready

    return docker_ready() and base_image_state() == "current"


# --------------------------------------------------------------------------- the mirror


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt already uses (deb822 *.sources or sources.list)."""
    candidates: list[str] = []
    for path in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = _deb822(stanza)
                suites = fields.get("suites", "").split()
                enabled = fields.get("enabled", "yes").lower() != "no"
                if enabled and "deb" in fields.get("types", "").split() and SUITE in suites:
                    candidates += fields.get("uris", "").split()
    lists = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    candidates.append(words[1])
    for uri in candidates:
        if uri.startswith(("http://", "https://", "file:/")):
            return uri
    raise StackError(
        f"no Debian {SUITE} mirror found in this machine's apt sources",
        expected=f"a `deb` source for suite {SUITE} in {sources_dir}/sources.list.d/*.sources "
        f"or {sources_dir}/sources.list",
        found=", ".join(candidates) or "none",
        remedy=f"add the Debian {SUITE} mirror you use to apt's sources (gangway never writes "
        "one itself)",
    )


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace() and key:
            fields[key] += " " + line.strip()
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


# --------------------------------------------------------------------------- inputs


def _run_logged(argv: list[str], log: Path, what: str, remedy: str) -> None:
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv[:4])} ...\n".encode())
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode})",
            expected=f"{what} to succeed",
            found=f"last lines of {log}:\n    {log_tail(log)}",
            remedy=remedy,
        )


def build_rootfs(home: Path | None = None) -> Path:
    """Make (once) the debootstrap root filesystem tarball; returns the cached tarball."""
    target = rootfs_tarball(home)
    if target.exists():
        return target
    if os.geteuid() != 0:
        raise StackError(
            "building the base image's root filesystem needs root (debootstrap)",
            expected=f"root, or a cached {target.name} in {target.parent}",
            found=f"uid {os.geteuid()} and no cached tarball",
            remedy="run `up` once as root (e.g. sudo), then it works unprivileged",
        )
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise StackError(
            "debootstrap is not installed",
            expected="/usr/sbin/debootstrap",
            found="not on PATH",
            remedy="apt-get install -y debootstrap",
        )
    cache = home_dir("cache", home)
    log = log_path("base-image", home)
    mirror = apt_mirror()
    workdir = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    rootfs = workdir / "rootfs"
    partial = target.with_suffix(".tar.partial")
    try:
        _run_logged(
            [debootstrap, f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}",
             f"--cache-dir={home_dir('cache/debs', home)}", SUITE, str(rootfs), mirror],
            log, "debootstrap",
            remedy="check that apt works on this machine (the mirror comes from its sources)",
        )
        with partial.open("wb") as out:
            result = subprocess.run(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                stdout=out, stderr=subprocess.PIPE, check=False,
            )
        if result.returncode != 0:
            raise StackError(
                "archiving the root filesystem failed",
                expected=f"a tarball of {rootfs}",
                found=result.stderr.decode(errors="replace")[-500:],
                remedy=f"check free space in {cache}",
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return target


def _host_wheel(source: str, home: Path | None = None) -> Path:
    """One pure-Python wheel (``name==version``) downloaded once by the host's pip."""
    wheels = home_dir("cache/wheels", home)
    project, version = source.split("==")
    pattern = f"{project.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    _run_logged(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(wheels), source],
        log_path("base-image", home), f"pip download {source}",
        remedy="check that pip reaches the package index (pip config / PIP_INDEX_URL)",
    )
    found = sorted(wheels.glob(pattern))
    if not found:
        raise StackError(
            f"pip download {source} produced no wheel",
            expected=pattern,
            found=", ".join(p.name for p in wheels.iterdir()) or "nothing",
            remedy="check pip's index configuration",
        )
    return found[0]


def _rie_wheel(home: Path | None = None) -> Path:
    return _host_wheel(RIE_SOURCE, home)


def ensure_host_rie(home: Path | None = None) -> Path:
    """The RIE binary at <home>/rie/aws-lambda-rie-x86_64 (mode 755), extracted once."""
    target = rie_host_path(home)
    if target.exists() and os.access(target, os.X_OK):
        return target
    wheel = _rie_wheel(home)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(RIE_MEMBER)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise StackError(
            "the SAM CLI wheel does not carry the Lambda Runtime Interface Emulator",
            expected=f"{RIE_MEMBER} in {wheel.name}",
            found=str(exc),
            remedy=f"delete {wheel} and run `up` again; or change RIE_SOURCE",
        ) from exc
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def _runtime_dir(home: Path | None = None) -> Path:
    """awslambdaric + boto3 for manylinux x86_64 / cp311, installed once per requirements."""
    requirements = RECIPE_DIR / "runtime-requirements.txt"
    key = _sha256(requirements.read_bytes())[:16]
    target = home_dir("cache", home) / f"runtime-{key}"
    if target.is_dir():
        return target
    partial = Path(tempfile.mkdtemp(prefix="runtime-", dir=target.parent))
    try:
        _run_logged(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
             "--target", str(partial), "--only-binary=:all:",
             "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
             "--implementation", "cp", "-r", str(requirements)],
            log_path("base-image", home), "vendoring the Lambda runtime (pip install --target)",
            remedy="check that pip reaches the package index",
        )
        # pip's console scripts point at the host's interpreter: useless in the image.
        shutil.rmtree(partial / "bin", ignore_errors=True)
        partial.chmod(0o755)  # mkdtemp made it 0700; the image keeps the mode
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- the image


def _import_rootfs(client: docker.DockerClient, tarball: Path) -> str:
    import docker

    tag = f"{ROOTFS_REPOSITORY}:{rootfs_recipe()}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        client.api.import_image_from_file(str(tarball), repository=ROOTFS_REPOSITORY,
                                          tag=rootfs_recipe())
        client.images.get(tag)
    except docker.errors.DockerException as exc:
        raise StackError(
            "docker import of the root filesystem failed",
            expected=f"image {tag}",
            found=str(exc),
            remedy=f"delete {tarball} (it may be truncated) and run `up` again",
        ) from exc
    return tag


def _build_context(runtime: Path, rie: Path, pip: Path, out: Path) -> None:
    """Write the build context as a tar: recipe files, runtime dir, RIE, pip wheel, pip.conf."""
    with tarfile.open(out, "w") as tar:
        for name in ("Dockerfile", "lambda-entrypoint.sh"):
            tar.add(RECIPE_DIR / name, arcname=name)
        tar.add(runtime, arcname="runtime")
        tar.add(rie, arcname="aws-lambda-rie")
        tar.add(pip, arcname=f"pip/{pip.name}")
        conf = package_index.pip_conf().encode()
        info = tarfile.TarInfo("pip.conf")
        info.size = len(conf)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(conf))


def _build(client: docker.DockerClient, rootfs_tag: str, recipe: str,
           home: Path | None) -> str:
    import docker

    log = log_path("base-image", home)
    runtime = _runtime_dir(home)
    rie = ensure_host_rie(home)
    pip = _host_wheel(PIP_SOURCE, home)
    with tempfile.TemporaryDirectory(dir=home_dir("cache", home)) as tmp:
        context = Path(tmp) / "context.tar"
        _build_context(runtime, rie, pip, context)
        image_id = None
        errors: list[str] = []
        try:
            with context.open("rb") as fileobj, log.open("a") as out:
                out.write(f"\n=== {time.strftime('%H:%M:%S')} docker build {BASE_IMAGE}\n")
                for chunk in client.api.build(
                    fileobj=fileobj, custom_context=True, tag=BASE_IMAGE, rm=True,
                    forcerm=True, pull=False, decode=True,
                    buildargs={"ROOTFS_IMAGE": rootfs_tag},
                    labels={RECIPE_LABEL: recipe},
                ):
                    if "stream" in chunk:
                        out.write(chunk["stream"])
                    if "error" in chunk:
                        errors.append(chunk["error"])
                        out.write(f"ERROR: {chunk['error']}\n")
                    if "aux" in chunk and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
        except docker.errors.DockerException as exc:
            errors.append(str(exc))
    if errors or image_id is None:
        raise StackError(
            f"docker build of {BASE_IMAGE} failed",
            expected="a built image",
            found=(errors[-1].strip() if errors else "no image id")
            + f"; last lines of {log}:\n    {log_tail(log)}",
            remedy=f"read {log}; the recipe is in {RECIPE_DIR}",
        )
    return image_id


def official_state(client: docker.DockerClient) -> str:
    """Whether OFFICIAL_IMAGE names this base ('ours'), another image ('foreign') or nothing."""
    import docker

    try:
        image = client.images.get(OFFICIAL_IMAGE)
    except docker.errors.ImageNotFound:
        return "missing"
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return "ours" if RECIPE_LABEL in labels else "foreign"


def tag_official(client: docker.DockerClient, image_id: str) -> bool:
    """Tag the base as OFFICIAL_IMAGE, unless that name holds a real (foreign) image.

    An engine that has AWS's own image (a laptop that pulled it) keeps it: builds FROM it
    then use the real thing. Returns whether the name now points at ``image_id``.
    """
    import docker

    state = official_state(client)
    if state == "foreign":
        return False
    if state == "ours" and client.images.get(OFFICIAL_IMAGE).id == image_id:
        return True
    repository, tag = OFFICIAL_IMAGE.rsplit(":", 1)
    try:
        client.api.tag(image_id, repository, tag, force=True)
    except docker.errors.APIError as exc:
        raise StackError(
            f"tagging the base image as {OFFICIAL_IMAGE} failed",
            expected=f"{OFFICIAL_IMAGE} naming {image_id[:19]}",
            found=str(exc),
            remedy="check the engine (`docker info`) and run `up` again",
        ) from exc
    return True


def ensure_base_image(home: Path | None = None, *, force: bool = False) -> BaseImageResult:
    """Build the base image unless one with the current recipe label exists; also the host RIE."""
    import docker

    client = docker_client()
    recipe = recipe_hash()
    steps: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        rie = ensure_host_rie(home)
        steps["rie"] = time.monotonic() - t0
        old_id, label = _image_label(client)
        if old_id is not None and label == recipe and not force:
            tag_official(client, old_id)
            return BaseImageResult(BASE_IMAGE, old_id, recipe, "reused", rie, steps)

        t0 = time.monotonic()
        tarball = build_rootfs(home)
        steps["rootfs"] = time.monotonic() - t0
        t0 = time.monotonic()
        rootfs_tag = _import_rootfs(client, tarball)
        steps["import"] = time.monotonic() - t0
        t0 = time.monotonic()
        image_id = _build(client, rootfs_tag, recipe, home)
        steps["build"] = time.monotonic() - t0
        # Before the old image is removed: the official name must not keep it alive.
        tag_official(client, image_id)

        # The imported rootfs tag was only the build's FROM; its layer stays in the image.
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(rootfs_tag, noprune=True)
        if old_id and old_id != image_id:
            # Best effort: an older base still used by service images stays.
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(old_id)
        return BaseImageResult(BASE_IMAGE, image_id, recipe, "built", rie, steps)
    except docker.errors.DockerException as exc:
        raise StackError(
            f"the Docker engine failed while preparing {BASE_IMAGE}",
            expected="docker image inspect/import/build to succeed",
            found=str(exc),
            remedy=f"check the engine (`docker info`) and {log_path('base-image', home)}",
        ) from exc
    finally:
        client.close()
