"""The rehearsal stack's local package index: a PEP 503 simple index over a wheelhouse.

Build containers reach no package index here, so the stack serves one on loopback, fed from
the HOST: the host's own pip (with whatever index, find-links or mirror its config names)
downloads wheels for the function's platform into ``<home>/wheelhouse``, and this server
lists them. The rehearsal base image's /etc/pip.conf points at it, and the rehearsal
environments build with the host network (``service.build.network = "host"``), so a
Dockerfile's ``pip install -r requirements.txt`` works unchanged. Nothing of this is used by
a real deploy's build.

Run as a daemon: ``python -m rehearsal.package_index --host H --port P --wheelhouse DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from gangway.config import REPO_ROOT, DeployConfig
from gangway.dockerfile import instructions
from gangway.errors import StackError
from gangway.file_lock import locked
from rehearsal import system
from rehearsal.system import LOOPBACK

NAME = "package-index"
PORT_VAR = "GANGWAY_PACKAGE_INDEX_PORT"
DEFAULT_PORT = 3141
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# Tells this index apart from another server answering on the port.
MARKER = "gangway-package-index"
STAMPS = ".filled"


def port() -> int:
    """The index's loopback port: $GANGWAY_PACKAGE_INDEX_PORT or 3141."""
    return system.env_port(PORT_VAR, DEFAULT_PORT)


def index_url() -> str:
    """The simple index's URL, as a build container on the host network reaches it."""
    return f"http://{LOOPBACK}:{port()}/simple/"


def wheelhouse(home: Path | None = None) -> Path:
    """The folder the index serves: <home>/wheelhouse."""
    return system.home_dir("wheelhouse", home)


def pip_conf() -> str:
    """The /etc/pip.conf baked into the rehearsal base image: this index, and nothing else."""
    return (
        "# Written by gangway's rehearsal base image: pip installs from the stack's local\n"
        "# package index (rehearsal/package_index.py), reached over the host network.\n"
        "[global]\n"
        f"index-url = {index_url()}\n"
        f"trusted-host = {LOOPBACK}\n"
        "disable-pip-version-check = true\n"
        "no-cache-dir = true\n"
        # A build without the host network gets a refused connection: fail fast, not in ~8 s.
        "retries = 1\n"
        "timeout = 30\n"
        "\n"
        "[install]\n"
        "root-user-action = ignore\n"
    )


def normalize(name: str) -> str:
    """A project name as PEP 503 normalizes it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def ready() -> bool:
    """True when this index answers GET /simple/ (its marker in the page)."""
    return system.http_ok(index_url(), accept=lambda r: MARKER in r.text)


def ensure_index(home: Path | None = None) -> system.DaemonResult:
    """Start the index over <home>/wheelhouse in the background unless it answers."""
    served = wheelhouse(home)

    def start() -> int:
        return system.spawn(
            NAME,
            [sys.executable, "-m", "rehearsal.package_index", "--host", LOOPBACK,
             "--port", str(port()), "--wheelhouse", str(served)],
            cwd=REPO_ROOT, home=home,
        )

    return system.ensure_daemon(NAME, index_url(), ready, start, home=home)


def wheel_count(home: Path | None = None) -> int:
    """How many wheels the wheelhouse holds."""
    return sum(1 for _ in wheelhouse(home).glob("*.whl"))


# --------------------------------------------------------------------------- filling


@dataclass(frozen=True)
class FillResult:
    """What a fill did: wheels resolved for the requirements, time, and whether pip ran."""

    wheels: int
    seconds: float
    requirements: tuple[Path, ...] = ()
    platform: str = ""
    python: str = ""
    cached: bool = False


@contextlib.contextmanager
def _fill_lock(home: Path | None) -> Iterator[None]:
    # Two fills at once would let one pip read a wheel the other is still writing.
    with locked(wheelhouse(home) / ".fill.lock"):
        yield


def _platform(architecture: str) -> str:
    if architecture not in PLATFORMS:
        raise StackError(
            f"no wheel platform for architecture {architecture!r}",
            expected=" or ".join(PLATFORMS),
            found=repr(architecture),
            remedy="set functions.*.architecture to x86_64 or arm64",
        )
    return PLATFORMS[architecture]


def fill_for_requirements(
    paths: list[Path], python: str, architecture: str, home: Path | None = None
) -> FillResult:
    """Download (host pip) wheels of the requirements files for the platform into the index.

    A set already filled (same files' contents, platform, Python) costs no pip run. Raises
    StackError naming the package when the host cannot get a wheel of it.
    """
    begun = time.monotonic()
    platform = _platform(architecture)
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return FillResult(0, 0.0, (), platform, python, cached=True)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise StackError(
            "a requirements file to fill the package index from does not exist",
            expected="readable requirements files",
            found=", ".join(missing),
            remedy="fix the path (or the Dockerfile's `pip install -r` line naming it)",
        )
    digest = hashlib.sha256(f"{platform}|{python}".encode())
    for path in paths:
        digest.update(path.read_bytes())
    house = wheelhouse(home)
    stamp = system.home_dir(f"wheelhouse/{STAMPS}", home) / f"{digest.hexdigest()[:24]}.json"
    with _fill_lock(home):
        with contextlib.suppress(OSError, ValueError):
            wheels = json.loads(stamp.read_text())["wheels"]
            if all((house / name).is_file() for name in wheels):
                return FillResult(len(wheels), time.monotonic() - begun, tuple(paths), platform,
                                  python, cached=True)
        wheels = _pip_download(paths, house, platform, python, home)
        stamp.write_text(json.dumps({"wheels": wheels, "requirements": [str(p) for p in paths]}))
    return FillResult(len(wheels), time.monotonic() - begun, tuple(paths), platform, python)


def _pip_download(
    paths: list[Path], house: Path, platform: str, python: str, home: Path | None
) -> list[str]:
    # The host's pip with its own configuration: whatever index or find-links it uses is
    # where the wheels come from (nothing here names an index).
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
        "--progress-bar", "off", "--only-binary=:all:", "--platform", platform,
        "--python-version", python, "--implementation", "cp", "--dest", str(house),
    ]
    for path in paths:
        command += ["-r", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    log = system.log_path("package-fill", home)
    with log.open("a") as out:
        out.write(f"\n=== {time.strftime('%H:%M:%S')} {shlex.join(command)}\n")
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        text = done.stderr + done.stdout
        package = re.search(r"No matching distribution found for (\S+)", text)
        reason = next(
            (line.strip() for line in text.splitlines() if line.startswith("ERROR")),
            f"pip exit {done.returncode}",
        )
        what = package.group(1) if package else ", ".join(str(p) for p in paths)
        project = re.match(r"[A-Za-z0-9._-]+", what) if package else None
        named = f"{project.group(0)} ({what})" if project and project.group(0) != what else what
        raise StackError(
            f"the host cannot get a wheel of {named} for {platform} / CPython {python}",
            expected=f"a {platform} (or pure-Python) wheel of every requirement in "
            + ", ".join(str(p) for p in paths),
            found=reason + f" (pip's output: {log})",
            remedy=f"pin a version of {project.group(0) if project else what} that publishes "
            "such a wheel, or make it "
            "available to the host's pip (`pip config list`: index-url, find-links)",
        )
    names: list[str] = []
    for match in re.finditer(r"(?:Saved|File was already downloaded) (\S+\.whl)", done.stdout):
        name = Path(match.group(1)).name
        if name not in names:
            names.append(name)
    return names


def service_requirements(config: DeployConfig) -> list[Path]:
    """The requirements a service's build installs with pip, as files of its build context.

    From each ``pip install`` of the service's Dockerfile (and deps_dockerfile): its ``-r`` /
    ``-c`` files and the packages named on the line. A ``pip install`` whose files cannot be
    found in the context falls back to the context's requirements*.txt. No pip install: [].
    """
    context = config.build_context
    build = config.service.build
    names = [build.dockerfile] + ([build.deps_dockerfile] if build.deps_dockerfile else [])
    files: list[Path] = []
    specs: list[str] = []
    fallback = False
    for name in names:
        dockerfile = context / name
        if not dockerfile.is_file():
            continue
        for item in instructions(dockerfile.read_text(errors="replace")):
            if item.keyword != "RUN":
                continue
            for install in _pip_installs(item.args):
                found = [_in_context(context, value) for value in install.files]
                files += [path for path in found if path is not None]
                specs += install.specs
                if None in found or not (install.files or install.specs):
                    fallback = True
    if fallback:
        files += sorted(context.glob("requirements*.txt"))
    if specs:
        listed = system.home_dir(f"wheelhouse/{STAMPS}") / (
            hashlib.sha256("\n".join(specs).encode()).hexdigest()[:16] + ".txt"
        )
        listed.write_text("\n".join(specs) + "\n")
        files.append(listed)
    unique: list[Path] = []
    for path in files:
        if path.resolve() not in unique:
            unique.append(path.resolve())
    return unique


def fill_for_service(config: DeployConfig, home: Path | None = None) -> FillResult:
    """Fill the index with what the service's Dockerfile installs, for its functions' platform."""
    architectures = sorted({fn.spec.architecture for fn in config.functions.values()})
    paths = service_requirements(config)
    result = FillResult(0, 0.0, tuple(paths), cached=True)
    for architecture in architectures or ["x86_64"]:
        one = fill_for_requirements(paths, config.service.build.python, architecture, home)
        result = FillResult(result.wheels + one.wheels, result.seconds + one.seconds,
                            tuple(paths), one.platform, one.python, result.cached and one.cached)
    return result


@dataclass(frozen=True)
class _Install:
    files: list[str]
    specs: list[str]


# pip install options that take a value (the value is not a package).
_VALUED = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target",
    "--platform", "--python-version", "--implementation", "--abi", "--root", "--prefix", "--src",
    "--upgrade-strategy", "--progress-bar", "--root-user-action", "--report", "-i",
    "--index-url", "--extra-index-url", "-f", "--find-links", "--no-binary", "--only-binary",
    "--trusted-host", "--global-option", "--config-settings", "-C", "--cache-dir", "--log",
    "--proxy", "--retries", "--timeout", "--exists-action", "--cert", "--client-cert",
    "--python", "--use-feature", "--use-deprecated", "--keyring-provider", "--group",
})
_SPEC = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]*\])?([<>=!~].*)?\Z")


def _pip_installs(run: str) -> list[_Install]:
    """Each ``pip install`` in a RUN instruction's shell text (or exec form)."""
    if run.startswith("["):
        with contextlib.suppress(ValueError):
            run = " ".join(str(word) for word in json.loads(run))
    found: list[_Install] = []
    for segment in re.split(r"&&|\|\||;|\|", run):
        try:
            words = shlex.split(segment)
        except ValueError:
            words = segment.split()
        starts = [i for i in range(1, len(words)) if words[i] == "install"
                  and re.search(r"(\A|/)pip[0-9.]*\Z", words[i - 1])]
        if not starts:
            continue
        files: list[str] = []
        specs: list[str] = []
        rest = iter(words[starts[0] + 1:])
        for word in rest:
            option, eq, value = word.partition("=")
            if option in ("-r", "--requirement", "-c", "--constraint"):
                files.append(value if eq else next(rest, ""))
            elif word.startswith("-r") and len(word) > 2 and not word.startswith("--"):
                files.append(word[2:])
            elif option in _VALUED and not eq:
                next(rest, None)
            elif not word.startswith("-") and "$" not in word and _SPEC.match(word):
                specs.append(word)
        found.append(_Install([f for f in files if f], specs))
    return found


def _in_context(context: Path, value: str) -> Path | None:
    """The build-context file a container path most likely came from (COPY'd into WORKDIR)."""
    candidates = []
    if "$" not in value and not value.startswith("/"):
        candidates.append(context / value)
    candidates.append(context / Path(value).name)
    return next((path for path in candidates if path.is_file()), None)


# --------------------------------------------------------------------------- the server


class _Index(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], folder: Path) -> None:
        super().__init__(address, _Handler)
        self.folder = folder
        self.hashes: dict[tuple[str, int, int], str] = {}
        self.lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (path.name, stat.st_size, stat.st_mtime_ns)
        with self.lock:
            known = self.hashes.get(key)
        if known is None:
            known = hashlib.sha256(path.read_bytes()).hexdigest()
            with self.lock:
                self.hashes[key] = known
        return known

    def projects(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for path in sorted(self.folder.glob("*.whl")):
            found.setdefault(normalize(path.name.split("-", 1)[0]), []).append(path)
        return found


class _Handler(BaseHTTPRequestHandler):
    server: _Index
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        parts = [part for part in path.split("/") if part]
        if parts == ["simple"]:
            links = "".join(
                f'<a href="/simple/{quote(name)}/">{html.escape(name)}</a><br/>\n'
                for name in sorted(self.server.projects())
            )
            self._page("Simple index", links)
        elif len(parts) == 2 and parts[0] == "simple":
            name = normalize(parts[1])
            if parts[1] != name:
                self._redirect(f"/simple/{quote(name)}/")
                return
            wheels = self.server.projects().get(name)
            if not wheels:
                self._send(404, "text/plain", f"{name}: not in the wheelhouse\n".encode())
                return
            links = "".join(
                f'<a href="/files/{quote(p.name)}#sha256={self.server.sha256(p)}">'
                f"{html.escape(p.name)}</a><br/>\n"
                for p in wheels
            )
            self._page(f"Links for {name}", links)
        elif len(parts) == 2 and parts[0] == "files" and parts[1].endswith(".whl"):
            wheel = self.server.folder / parts[1]
            if "/" in parts[1] or not wheel.is_file():
                self._send(404, "text/plain", b"no such file\n")
                return
            self._send(200, "application/octet-stream", wheel.read_bytes())
        elif path.rstrip("/") in ("", "/"):
            self._redirect("/simple/")
        else:
            self._send(404, "text/plain", b"not found\n")

    def _page(self, title: str, body: str) -> None:
        text = (
            "<!DOCTYPE html>\n<html><head>"
            '<meta name="pypi:repository-version" content="1.0">'
            f'<meta name="generator" content="{MARKER}">'
            f"<title>{html.escape(title)}</title></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}</body></html>\n"
        )
        self._send(200, "text/html; charset=utf-8", text.encode())

    def _redirect(self, location: str) -> None:
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(host: str, listen_port: int, folder: Path) -> None:
    """Serve the wheelhouse until the process is stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    with _Index((host, listen_port), folder) as server:
        print(f"{MARKER}: serving {folder} at http://{host}:{listen_port}/simple/", flush=True)
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Command line of the daemon the stack starts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--wheelhouse", type=Path, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port, args.wheelhouse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
