"""The rehearsal stack as one thing: ``up()``, ``down()``, ``status()``.

up() runs, in order: packages, dockerd, MariaDB, registry, the Lambda base image (+ host RIE),
databases/users/stack.env, the local package index and its wheels (what each environment's
Dockerfile pip-installs), the moto bridge, AWS seeding, the Prefect server, then the
process work pool ``gangway``, the deployments of prefect.yaml and a Prefect worker (so
scheduled reconcilers and flow runs of deployments run against this stack). Each step is
idempotent and timed; a second up() with everything running takes a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gangway.config import (
    REPO_ROOT,
    DeployConfig,
    available_environments,
    gangway_home,
    load_config,
)
from gangway.errors import GangwayError, StackError
from gangway.file_lock import locked
from rehearsal import (
    auth_registry,
    base_image,
    mariadb_setup,
    package_index,
    prefect_worker,
    system,
)
from rehearsal.system import LOOPBACK

BOOTSTRAP_TAG = "bootstrap"
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))
# States that mean the component is usable.
GOOD_STATES = frozenset({
    "ok", "installed", "started", "running", "external", "reused", "built", "current",
    "written", "seeded", "pushed", "skipped", "filled",
})


@dataclass
class Component:
    """One line of the stack's status table."""

    name: str
    state: str
    endpoint: str = ""
    pid: int | None = None
    log: Path | None = None
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the component is usable."""
        return self.state in GOOD_STATES


@dataclass
class StackStatus:
    """Every component of the stack, in start order, with the time each step took."""

    components: list[Component] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every component is usable."""
        return all(c.ok for c in self.components)

    def component(self, name: str) -> Component:
        """The component called ``name`` (KeyError if there is none)."""
        for item in self.components:
            if item.name == name:
                return item
        raise KeyError(name)

    def render(self) -> str:
        """A plain-text table: component, state, endpoint, pid, log, seconds, detail."""
        rows = [("component", "state", "endpoint", "pid", "log", "s", "detail")]
        for c in self.components:
            log = str(c.log) if c.log else ""
            home = str(gangway_home())
            if log.startswith(home):
                log = "<home>" + log[len(home):]
            rows.append((c.name, c.state, c.endpoint, str(c.pid or ""), log,
                         f"{c.seconds:.1f}", c.detail))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = []
        for i, row in enumerate(rows):
            cells = [cell.ljust(widths[j]) for j, cell in enumerate(row[:-1])]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(f"total {self.seconds:.1f} s; home {gangway_home()}")
        return "\n".join(lines)

    __str__ = render


# --------------------------------------------------------------------------- env file


def load_stack_env(home: Path | None = None) -> dict[str, str]:
    """Load <home>/stack.env into os.environ without overriding set variables; returns applied."""
    applied: dict[str, str] = {}
    for key, value in mariadb_setup.read_stack_env(mariadb_setup.stack_env_path(home)).items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied


# --------------------------------------------------------------------------- moto bridge


def moto_endpoint() -> str:
    """The moto bridge's base URL."""
    return f"http://{LOOPBACK}:{system.ports().moto}"


def moto_ready() -> bool:
    """True when the moto bridge answers GET /moto-api/."""
    # moto's dashboard; the body check tells it from another server answering 200 there.
    return system.http_ok(f"{moto_endpoint()}/moto-api/",
                          accept=lambda r: "moto" in r.text.lower())


def ensure_moto(home: Path | None = None) -> system.DaemonResult:
    """Start the moto bridge (rehearsal.moto_bridge) in the background unless it answers."""
    port = system.ports().moto
    rie = base_image.rie_host_path(home)

    def start() -> int:
        env = dict(os.environ)
        if os.environ.get("GANGWAY_DOCKER_HOST"):
            # The bridge starts function containers through the Docker SDK's own variable.
            env["DOCKER_HOST"] = os.environ["GANGWAY_DOCKER_HOST"]
        return system.spawn(
            "moto",
            [sys.executable, "-m", "rehearsal.moto_bridge", "--host", LOOPBACK,
             "--port", str(port), "--rie", str(rie)],
            env=env, cwd=REPO_ROOT, home=home,
        )

    return system.ensure_daemon("moto", moto_endpoint(), moto_ready, start, home=home)


# --------------------------------------------------------------------------- seeding


def _registry_digest(
    registry: str, repository: str, tag: str, login: tuple[str, str] | None = None
) -> str | None:
    import httpx

    try:
        response = httpx.head(
            f"http://{registry}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES}, timeout=5, trust_env=False, auth=login,
        )
    except httpx.HTTPError:
        return None
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def push_bootstrap(
    registry: str, repository: str, login: tuple[str, str] | None = None
) -> tuple[str, str, bool]:
    """Tag the base image as <registry>/<repository>:bootstrap and push it unless it is there.

    login: (user, password) for a registry that requires one (Basic, as htpasswd answers).
    Returns (image URI, digest, pushed?).
    """
    import docker

    uri = f"{registry}/{repository}"
    auth = {"username": login[0], "password": login[1]} if login else None
    client = system.docker_client()
    try:
        image = client.images.get(base_image.BASE_IMAGE)
        known = {d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or []
                 if d.startswith(uri + "@")}
        digest = _registry_digest(registry, repository, BOOTSTRAP_TAG, login)
        if digest and digest in known:
            return f"{uri}:{BOOTSTRAP_TAG}", digest, False
        image.tag(uri, BOOTSTRAP_TAG)
        errors: list[str] = []
        pushed_digest = ""
        for chunk in client.images.push(uri, tag=BOOTSTRAP_TAG, stream=True, decode=True,
                                        auth_config=auth):
            if "error" in chunk:
                errors.append(str(chunk.get("error")))
            aux = chunk.get("aux") or {}
            if "Digest" in aux:
                pushed_digest = aux["Digest"]
        if errors or not pushed_digest:
            raise StackError(
                f"pushing {uri}:{BOOTSTRAP_TAG} failed",
                expected=f"the base image in the registry at {registry}",
                found=errors[-1] if errors else "no digest reported",
                remedy=f"check the registry log {system.log_path('registry')}",
            )
        return f"{uri}:{BOOTSTRAP_TAG}", pushed_digest, True
    except docker.errors.DockerException as exc:
        raise StackError(
            f"pushing {uri}:{BOOTSTRAP_TAG} failed",
            expected=f"the base image pushed to {registry}",
            found=str(exc),
            remedy=f"check the registry ({system.log_path('registry')}) and the engine",
        ) from exc
    finally:
        client.close()


def registry_login(config: DeployConfig) -> tuple[str, str] | None:
    """The environment's registry login (user, password from its variable), None if anonymous."""
    auth = config.environment.registry_auth
    if auth is None:
        return None
    password = os.environ.get(auth.password_env)
    if not password:
        raise StackError(
            f"{config.environment.name}: no password for the registry "
            f"{config.environment.registry}",
            expected=f"{auth.password_env} set (stack.env holds the rehearsal's)",
            found="not set",
            remedy=f"run `up` (it writes {auth_registry.PASSWORD_ENV} to stack.env), or "
            f"export {auth.password_env}",
        )
    return auth.username, password


def _seed_marker(home: Path | None) -> Path:
    return system.home_dir("run", home) / "moto.seeded.json"


def _bridge_identity(home: Path | None) -> str | None:
    """pid + start time of the bridge we started; None when it is not ours (then always seed)."""
    if system.owned_pid("moto", home) is None:
        return None
    return system.pid_path("moto", home).read_text().strip()


def seed(envs: Iterable[str], *, force: bool = False, home: Path | None = None) -> Component:
    """Push the bootstrap image and seed moto for each env, unless this bridge already has it."""
    begun = time.monotonic()
    envs = list(envs)
    configs = [load_config(env) for env in envs]
    uris: dict[str, str] = {}
    digests: dict[str, str] = {}
    pushed = []
    for config in configs:
        key = config.image_repository
        if key not in uris:
            uri, digest, did_push = push_bootstrap(config.environment.registry,
                                                   config.service.build.repository,
                                                   registry_login(config))
            uris[key], digests[key] = uri, digest
            if did_push:
                pushed.append(uri)
    identity = _bridge_identity(home)
    wanted = {"bridge": identity, "envs": sorted(envs), "images": digests}
    marker = _seed_marker(home)
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        done = None
    if not force and identity is not None and done == wanted:
        return Component("aws-seed", "seeded", moto_endpoint(),
                         seconds=time.monotonic() - begun,
                         detail=f"already seeded on this bridge: {', '.join(envs)}")

    from rehearsal.aws_seed import seed_environment

    marker.unlink(missing_ok=True)
    for config in configs:
        seed_environment(config, uris[config.image_repository])
    marker.write_text(json.dumps(wanted))
    detail = f"seeded {', '.join(envs)}"
    if pushed:
        detail += f"; pushed {', '.join(pushed)}"
    return Component("aws-seed", "seeded", moto_endpoint(), seconds=time.monotonic() - begun,
                     detail=detail)


# --------------------------------------------------------------------------- up / down / status


def _daemon(result: system.DaemonResult) -> Component:
    return Component(result.name, result.state, result.endpoint, result.pid, result.log,
                     result.seconds)


def _index_component(component: Component) -> Component:
    if component.ok:
        count = package_index.wheel_count()
        plural = "" if count == 1 else "s"
        component.detail = f"{count} wheel{plural} in {package_index.wheelhouse()}"
    return component


def _official_detail() -> str:
    client = system.docker_client()
    try:
        state = base_image.official_state(client)
    finally:
        client.close()
    return {
        "ours": f"also tagged {base_image.OFFICIAL_IMAGE}",
        "foreign": f"{base_image.OFFICIAL_IMAGE} is a real image here (left as it is)",
    }.get(state, f"{base_image.OFFICIAL_IMAGE} not tagged")


def _step(status: StackStatus, name: str, action: Callable[[], Component]) -> Component:
    begun = time.monotonic()
    try:
        component = action()
    except GangwayError:
        raise
    except Exception as exc:
        # Anything unforeseen still reaches the user as a stack error naming the step.
        raise StackError(
            f"step {name!r} failed unexpectedly",
            expected=f"{name} to come up",
            found=f"{type(exc).__name__}: {exc}",
            remedy=f"read the logs in {system.home_dir('logs')} and run `up` again",
        ) from exc
    component.seconds = time.monotonic() - begun
    status.components.append(component)
    return component


@contextlib.contextmanager
def _exclusive(home: Path | None = None) -> Iterator[None]:
    """One up()/down() at a time per home: parallel test workers must not start daemons twice."""
    with locked(system.home_dir("run", home) / "stack.lock"):
        yield


def up(envs: list[str] | None = None, *, reseed: bool = False) -> StackStatus:
    """Bring the whole rehearsal stack up (idempotent); raises StackError naming what failed."""
    with _exclusive():
        return _up(envs, reseed=reseed)


def _up(envs: list[str] | None, *, reseed: bool) -> StackStatus:
    begun = time.monotonic()
    envs = envs if envs is not None else available_environments()
    status = StackStatus()
    load_stack_env()

    def packages() -> Component:
        installed = system.ensure_packages()
        return Component("packages", "installed" if installed else "ok",
                         detail=", ".join(installed) or "all present")

    _step(status, "packages", packages)
    # The Prefect server needs none of the rest: let its ~10-20 s start overlap the others.
    prefect_pid = system.start_prefect()
    _step(status, "dockerd", lambda: _daemon(system.ensure_dockerd()))
    _step(status, "mariadb", lambda: _daemon(system.ensure_mariadb()))
    _step(status, "registry", lambda: _daemon(system.ensure_registry()))

    def image() -> Component:
        result = base_image.ensure_base_image()
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.steps.items() if v >= 0.05)
        return Component("base-image", result.state, result.tag,
                         log=system.log_path("base-image"),
                         detail=f"recipe {result.recipe}; host RIE {result.rie}"
                         + (f"; {steps}" if steps else "") + "; " + _official_detail())

    _step(status, "base-image", image)

    def databases() -> Component:
        names = mariadb_setup.ensure_databases(envs)
        load_stack_env()
        return Component("databases", "ok", f"{LOOPBACK}:{system.ports().mysql}",
                         detail=f"{', '.join(names) or 'none local'}; secrets in "
                         f"{mariadb_setup.stack_env_path()} (600)")

    _step(status, "databases", databases)

    def authenticating_registry() -> Component:
        component = _daemon(auth_registry.ensure())
        load_stack_env()
        component.detail = (f"htpasswd login {auth_registry.USER!r}, password in "
                            f"{auth_registry.PASSWORD_ENV} (stack.env)")
        return component

    # After databases: its password joins the stack.env that step writes.
    _step(status, auth_registry.NAME, authenticating_registry)
    _step(status, "package-index", lambda: _index_component(
        _daemon(package_index.ensure_index())))

    # After databases: reading an environment's config needs the secrets that step writes.
    def wheels() -> Component:
        filled = []
        for env in envs:
            result = package_index.fill_for_service(load_config(env))
            filled.append(f"{env} {result.wheels}" + (" (cached)" if result.cached else ""))
        return Component("wheels", "filled", package_index.index_url(),
                         log=system.log_path("package-fill"),
                         detail=f"wheels per environment: {', '.join(filled) or 'none'}; "
                         f"{package_index.wheel_count()} in {package_index.wheelhouse()}")

    _step(status, "wheels", wheels)
    moto = _step(status, "moto", lambda: _daemon(ensure_moto()))
    _step(status, "aws-seed",
          lambda: seed(envs, force=reseed or moto.state == "started"))

    def prefect() -> Component:
        result = system.ensure_prefect()
        if prefect_pid is not None and result.state == "running":
            result.state = "started"
        return _daemon(result)

    _step(status, "prefect", prefect)
    _step(status, "work-pool", lambda: Component(
        "work-pool", "ok", prefect_worker.POOL, detail=prefect_worker.ensure_work_pool()))
    _step(status, "deployments", lambda: Component(
        "deployments", "ok", "prefect.yaml", detail=prefect_worker.register_deployments()))
    _step(status, "prefect-worker", lambda: _daemon(prefect_worker.ensure_worker()))
    status.seconds = time.monotonic() - begun
    return status


def down() -> None:
    """Stop every daemon the stack started; daemons it found running are left alone."""
    with _exclusive():
        system.stop_all()
        _seed_marker(None).unlink(missing_ok=True)


def _probe(name: str, endpoint: str, ready: Callable[[], bool], pid_name: str) -> Component:
    begun = time.monotonic()
    answers = ready()
    pid = system.owned_pid(pid_name)
    state = ("running" if pid else "external") if answers else ("starting" if pid else "down")
    return Component(name, state, endpoint, pid, system.log_path(pid_name) if pid else None,
                     time.monotonic() - begun)


def status() -> StackStatus:
    """What is up now, without starting or changing anything."""
    begun = time.monotonic()
    result = StackStatus()
    ports = system.ports()
    t0 = time.monotonic()
    missing = system.missing_packages()
    result.components.append(Component(
        "packages", "missing" if missing else "ok", seconds=time.monotonic() - t0,
        detail=", ".join(missing) or "all present"))
    docker_endpoint = (os.environ.get("GANGWAY_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
                       or "unix:///var/run/docker.sock")
    result.components += [
        _probe("dockerd", docker_endpoint, system.docker_ready, "dockerd"),
        _probe("mariadb", f"{LOOPBACK}:{ports.mysql}", system.mysql_ready, "mariadb"),
        _probe("registry", f"http://{LOOPBACK}:{ports.registry}", system.registry_ready,
               "registry"),
    ]
    result.components.append(_probe(
        auth_registry.NAME, f"http://{auth_registry.endpoint()}", auth_registry.ready,
        auth_registry.NAME))
    t0 = time.monotonic()
    if result.component("dockerd").ok:
        state = base_image.base_image_state()
    else:
        state = "unknown"
    result.components.append(Component(
        "base-image", state, base_image.BASE_IMAGE, seconds=time.monotonic() - t0,
        detail=f"recipe {base_image.recipe_hash()}"
        + (f"; {_official_detail()}" if state != "unknown" else "")))
    env_file = mariadb_setup.stack_env_path()
    result.components.append(Component(
        "databases", "written" if env_file.exists() else "missing",
        f"{LOOPBACK}:{ports.mysql}", detail=str(env_file)))
    result.components.append(_index_component(_probe(
        "package-index", package_index.index_url(), package_index.ready, package_index.NAME)))
    moto = _probe("moto", moto_endpoint(), moto_ready, "moto")
    result.components.append(moto)
    identity = _bridge_identity(None)
    try:
        marker = json.loads(_seed_marker(None).read_text())
    except (OSError, ValueError):
        marker = None
    seeded = marker is not None and identity is not None and marker.get("bridge") == identity
    result.components.append(Component(
        "aws-seed", "seeded" if seeded else ("unknown" if moto.ok else "down"), moto_endpoint(),
        detail=", ".join(marker.get("envs", [])) if seeded and marker else ""))
    result.components.append(
        _probe("prefect", f"http://{LOOPBACK}:{ports.prefect}/api", system.prefect_ready,
               "prefect"))
    result.components.append(
        _probe("prefect-worker", f"pool {prefect_worker.POOL}", prefect_worker.worker_ready,
               prefect_worker.WORKER))
    result.seconds = time.monotonic() - begun
    return result
