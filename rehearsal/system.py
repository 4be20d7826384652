"""Host provisioning for the rehearsal stack: Debian packages and the daemons it runs.

Every function is idempotent: what already answers is used as it is, what the stack started
is tracked by a pid file under ``<home>/run`` so that ``stop_all()`` stops only that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from gangway.config import gangway_home
from gangway.errors import StackError

if TYPE_CHECKING:
    import docker

LOOPBACK = "127.0.0.1"
DEFAULT_WAIT = 60.0

# package -> why the stack needs it; the daemons' own checks decide whether it can be skipped.
REQUIRED_PACKAGES: dict[str, str] = {
    "docker.io": "the Docker engine (dockerd, containerd, runc)",
    "debootstrap": "builds the Lambda base image's root filesystem",
    "mariadb-server": "the MySQL-compatible database (mariadbd, mysql, mysqladmin)",
    "docker-registry": "the local OCI registry (CNCF distribution)",
}

MARIADB_DATADIR = Path("/var/lib/mysql")
MARIADB_RUNDIR = Path("/run/mysqld")


# --------------------------------------------------------------------------- layout & ports


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the stack's services, from GANGWAY_*_PORT or the defaults."""

    registry: int
    moto: int
    prefect: int
    mysql: int


def env_port(var: str, default: int) -> int:
    """The TCP port in $var, else default; StackError for anything that is not a port."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(
            f"{var} is not a TCP port",
            expected="an integer between 1 and 65535",
            found=repr(raw),
            remedy=f"unset {var} to use {default}, or set it to a free port",
        )
    return int(raw)


def ports() -> Ports:
    """The stack's ports: GANGWAY_REGISTRY_PORT, _MOTO_PORT, _PREFECT_PORT, _MYSQL_PORT."""
    return Ports(
        registry=env_port("GANGWAY_REGISTRY_PORT", 5000),
        moto=env_port("GANGWAY_MOTO_PORT", 4566),
        prefect=env_port("GANGWAY_PREFECT_PORT", 4200),
        mysql=env_port("GANGWAY_MYSQL_PORT", 3306),
    )


def home_dir(sub: str = "", home: Path | None = None) -> Path:
    """``<home>/<sub>``, created if missing (home is $GANGWAY_HOME or ./.gangway)."""
    path = (home or gangway_home()) / sub if sub else (home or gangway_home())
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(
            f"cannot create the stack directory {path}",
            expected="a writable directory",
            found=str(exc),
            remedy="set GANGWAY_HOME to a writable directory",
        ) from exc
    return path


def log_path(name: str, home: Path | None = None) -> Path:
    """Where the daemon or step ``name`` writes its log."""
    return home_dir("logs", home) / f"{name}.log"


def pid_path(name: str, home: Path | None = None) -> Path:
    """The pid file of a daemon the stack started."""
    return home_dir("run", home) / f"{name}.pid"


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    # Only the latest start: earlier runs' lines would hide what failed now.
    starts = [i for i, line in enumerate(tail) if line.startswith("=== ")]
    if starts:
        tail = tail[starts[-1]:]
    return "\n    ".join(tail) if tail else "(log is empty)"


# --------------------------------------------------------------------------- pid files


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of a process, so a recycled pid is never mistaken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 counted after the ")" closing the command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        # A zombie has exited; only its parent's wait is missing.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def write_pid(name: str, pid: int, home: Path | None = None, endpoint: str = "") -> None:
    """Record that the stack started ``name`` as process ``pid`` (serving ``endpoint``)."""
    pid_path(name, home).write_text(f"{pid} {_proc_start_time(pid) or '-'} {endpoint}".strip()
                                    + "\n")


def owned_endpoint(name: str, home: Path | None = None) -> str:
    """The endpoint recorded for a daemon the stack started ('' when unknown)."""
    try:
        parts = pid_path(name, home).read_text().split()
    except OSError:
        return ""
    return parts[2] if len(parts) > 2 else ""


def owned_pid(name: str, home: Path | None = None) -> int | None:
    """The pid of ``name`` if the stack started it and it still runs; stale files are removed."""
    path = pid_path(name, home)
    try:
        parts = path.read_text().split()
        pid = int(parts[0])
    except (OSError, ValueError, IndexError):
        return None
    recorded = parts[1] if len(parts) > 1 else "-"
    current = _proc_start_time(pid)
    if _alive(pid) and (recorded == "-" or current is None or current == recorded):
        return pid
    path.unlink(missing_ok=True)
    return None


SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")


def daemon_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a daemon: the caller's, minus gangway's rehearsal secrets."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith("GANGWAY_") and any(word in key for word in SECRET_WORDS):
            del env[key]
    return env


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> int:
    """Start ``argv`` detached (own session, survives us), log to <home>/logs/<name>.log."""
    log = log_path(name, home)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} gangway starts {name}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=daemon_env(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StackError(
                f"cannot start {name}",
                expected=f"{argv[0]} executable",
                found=str(exc),
                remedy=f"install the program that provides {argv[0]} (see ensure_packages)",
            ) from exc
    write_pid(name, proc.pid, home)
    return proc.pid


def wait_healthy(
    name: str,
    check: Callable[[], bool],
    *,
    timeout: float = DEFAULT_WAIT,
    pid: int | None = None,
    log: Path | None = None,
    endpoint: str = "",
) -> None:
    """Poll ``check`` until it is true; StackError naming the daemon and its log on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        if check():
            return
        if pid is not None and not _alive(pid):
            # Reap it if it is our child, to read a real exit status.
            code: int | str = "?"
            with contextlib.suppress(ChildProcessError, OSError):
                reaped, status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    code = os.waitstatus_to_exitcode(status)
            raise StackError(
                f"{name} exited while starting (exit status {code})",
                expected=f"{name} answering on {endpoint}" if endpoint else f"{name} running",
                found=f"process {pid} is gone; last lines of {log}:\n    "
                + (log_tail(log) if log else "(no log)"),
                remedy=f"read {log}; fix the cause (often: the port is taken) and run `up` again",
            )
        if time.monotonic() >= deadline:
            raise StackError(
                f"{name} did not become healthy within {timeout:.0f} s",
                expected=f"{name} answering on {endpoint}" if endpoint else f"{name} healthy",
                found="no answer; last lines of "
                + (f"{log}:\n    {log_tail(log)}" if log else "its log: (none)"),
                remedy=f"read {log or 'the daemon log'}; stop whatever holds the port, then `up`",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def stop_pid(name: str, pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL to the process group if it is still there after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- health checks


def tcp_open(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(
    url: str, timeout: float = 2.0, accept: Callable[[httpx.Response], bool] | None = None
) -> bool:
    """True when GET url answers 200 (and ``accept`` likes the response); proxies ignored."""
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and (accept is None or accept(response))


def _docker_base_url() -> str | None:
    return os.environ.get("GANGWAY_DOCKER_HOST") or os.environ.get("DOCKER_HOST") or None


def docker_client(timeout: int = 300) -> docker.DockerClient:
    """A Docker SDK client for GANGWAY_DOCKER_HOST / DOCKER_HOST, else the local socket."""
    import docker

    base_url = _docker_base_url()
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=timeout)
        return docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        raise StackError(
            "cannot reach the Docker engine",
            expected=f"a Docker engine at {base_url or 'unix:///var/run/docker.sock'}",
            found=str(exc),
            remedy="run `up` (it starts dockerd when root on Debian) or start Docker yourself",
        ) from exc


def docker_ready() -> bool:
    """True when the Docker engine answers a ping."""
    import docker

    try:
        client = docker_client(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (StackError, docker.errors.DockerException, OSError):
        return False
    except Exception:  # requests' own errors are not DockerException subclasses
        return False


def mysql_ready(port: int | None = None) -> bool:
    """TCP connect and a MySQL greeting, then `mysqladmin ping` when that tool is installed."""
    port = port or ports().mysql
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.settimeout(2.0)
            greeting = sock.recv(64)
    except OSError:
        return False
    # A MySQL server speaks first: 3-byte length, sequence 0, protocol version 10.
    if len(greeting) < 5 or greeting[4] != 10:
        return False
    admin = shutil.which("mysqladmin") or shutil.which("mariadb-admin")
    if admin is None:
        return True
    socket_path = MARIADB_RUNDIR / "mysqld.sock"
    if _is_root() and socket_path.exists():
        # A real login as root over the socket: no "access denied" noise in the server log.
        argv = [admin, f"--socket={socket_path}", "--user=root", "--connect-timeout=2", "ping"]
    else:
        # Exit status is 0 even when access is denied: the server is up and answering.
        argv = [admin, "--protocol=TCP", f"--host={LOOPBACK}", f"--port={port}",
                "--connect-timeout=2", "--user=gangway-healthcheck", "ping"]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def registry_ready(port: int | None = None) -> bool:
    """True when GET /v2/ on the registry answers 200."""
    # The API version header tells a registry from any web server answering 200 on /v2/.
    return http_ok(
        f"http://{LOOPBACK}:{port or ports().registry}/v2/",
        accept=lambda r: r.headers.get("Docker-Distribution-Api-Version", "").startswith(
            "registry/2"
        ),
    )


def prefect_ready(port: int | None = None) -> bool:
    """True when the Prefect server's /api/health answers 200."""
    return http_ok(
        f"http://{LOOPBACK}:{port or ports().prefect}/api/health",
        accept=lambda r: r.text.strip() == "true",
    )


# --------------------------------------------------------------------------- packages


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _is_debian() -> bool:
    return Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def missing_packages(packages: Sequence[str] = tuple(REQUIRED_PACKAGES)) -> list[str]:
    """The Debian packages of ``packages`` not installed (all of them where dpkg is absent)."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.strip().endswith("install ok installed")
    }
    return [p for p in packages if p not in installed]


def _satisfied_without(package: str) -> bool:
    """Whether what ``package`` provides is already reachable (a laptop's own daemons)."""
    if package == "docker.io":
        return docker_ready()
    if package == "mariadb-server":
        return mysql_ready()
    if package == "docker-registry":
        return registry_ready()
    if package == "debootstrap":
        from rehearsal import base_image

        return base_image.rootfs_available()
    return False


def _elsewhere(package: str) -> str:
    """What to provide on a system without apt, for the package ``package`` stands for."""
    p = ports()
    return {
        "docker.io": "a Docker Engine (DOCKER_HOST or /var/run/docker.sock)",
        "mariadb-server": f"MySQL 8 or MariaDB 10.11 on {LOOPBACK}:{p.mysql}",
        "docker-registry": f"an OCI registry (CNCF distribution) on {LOOPBACK}:{p.registry}",
        "debootstrap": "debootstrap, run once as root to build the base image",
    }.get(package, package)


def ensure_packages(packages: Sequence[str] = tuple(REQUIRED_PACKAGES)) -> list[str]:
    """Install the missing packages with apt (root on Debian only); returns what was installed."""
    missing = missing_packages(packages)
    needed = [p for p in missing if not _satisfied_without(p)]
    if not needed:
        return []
    if not (_is_root() and _is_debian()):
        why = "; ".join(f"{p}: {REQUIRED_PACKAGES.get(p, 'needed')}" for p in needed)
        where = "not root" if _is_debian() else "not a Debian system"
        raise StackError(
            "the rehearsal stack needs software that is not installed",
            expected=why,
            found=f"missing: {', '.join(needed)} ({where}, so gangway does not install them)",
            remedy=f"sudo apt-get install -y {' '.join(needed)}"
            if _is_debian()
            else "install and start: " + "; ".join(_elsewhere(p) for p in needed)
            + "; then run `up` again",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = log_path("apt")
    for argv in (
        ["apt-get", "update"],
        # With recommends, as verified on this machine kind (docker.io recommends
        # cgroupfs-mount, which a machine without systemd needs).
        ["apt-get", "install", "-y", *needed],
    ):
        with log.open("ab") as out:
            result = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
            )
        if result.returncode != 0:
            raise StackError(
                f"`{' '.join(argv[:2])}` failed (exit {result.returncode})",
                expected=f"{', '.join(needed)} installed",
                found=f"last lines of {log}:\n    {log_tail(log)}",
                remedy=f"fix apt (sources, network, dpkg lock) and run `apt-get install -y "
                f"{' '.join(needed)}` by hand",
            )
    still = missing_packages(needed)
    if still:
        raise StackError(
            "apt-get reported success but packages are not installed",
            expected=", ".join(needed),
            found=f"still missing: {', '.join(still)}",
            remedy=f"read {log}",
        )
    return needed


# --------------------------------------------------------------------------- daemons


@dataclass
class DaemonResult:
    """What ensure_* found or did: started by us now, ours already running, or external."""

    name: str
    state: str  # "started" | "running" | "external" | "stopped"
    endpoint: str
    pid: int | None
    log: Path | None
    seconds: float = 0.0


def ensure_daemon(
    name: str,
    endpoint: str,
    check: Callable[[], bool],
    start: Callable[[], int],
    *,
    timeout: float = DEFAULT_WAIT,
    home: Path | None = None,
) -> DaemonResult:
    """Use ``name`` if ``check`` passes, else ``start`` it and wait until ``check`` passes."""
    begun = time.monotonic()
    log = log_path(name, home)
    ours = owned_pid(name, home)
    if ours is not None and owned_endpoint(name, home) not in ("", endpoint):
        if check():
            # Something else serves the new endpoint; ours still serves the old one.
            return DaemonResult(name, "external", endpoint, None, None, time.monotonic() - begun)
        # The port changed since we started it: stop ours rather than leave it orphaned.
        stop_pid(name, ours)
        pid_path(name, home).unlink(missing_ok=True)
        ours = None
    if check():
        if ours is not None and not owned_endpoint(name, home):
            write_pid(name, ours, home, endpoint)  # a pid file from before endpoints were kept
        state = "running" if ours else "external"
        return DaemonResult(name, state, endpoint, ours, log if ours else None,
                            time.monotonic() - begun)
    # One of ours that is alive but not answering yet is still starting: wait, never double.
    pid = ours
    if pid is None:
        pid = start()
        write_pid(name, pid, home, endpoint)
    wait_healthy(name, check, timeout=timeout, pid=pid, log=log, endpoint=endpoint)
    return DaemonResult(name, "started", endpoint, pid, log, time.monotonic() - begun)


def _need_local_start(name: str, what: str) -> None:
    if not _is_root():
        raise StackError(
            f"{name} is not answering and gangway can start it only as root",
            expected=f"{what}",
            found="nothing answering",
            remedy=f"start {name} yourself, or run `up` as root",
        )


def ensure_dockerd(home: Path | None = None, timeout: float = DEFAULT_WAIT) -> DaemonResult:
    """Start dockerd (detached, log <home>/logs/dockerd.log) unless an engine already answers."""
    base_url = _docker_base_url()
    endpoint = base_url or "unix:///var/run/docker.sock"

    def start() -> int:
        if base_url:
            # The user pointed us at an engine of their own: never start another one.
            raise StackError(
                "the Docker engine named by GANGWAY_DOCKER_HOST/DOCKER_HOST does not answer",
                expected=f"a Docker engine at {base_url}",
                found="no answer to ping",
                remedy="start that engine, or unset the variable to let gangway start dockerd",
            )
        _need_local_start("dockerd", "the Docker engine on /var/run/docker.sock")
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise StackError(
                "dockerd is not installed",
                expected="/usr/sbin/dockerd (package docker.io)",
                found="no dockerd on PATH",
                remedy="apt-get install -y docker.io",
            )
        return spawn("dockerd", [dockerd], home=home)

    return ensure_daemon("dockerd", endpoint, docker_ready, start, timeout=timeout, home=home)


def _init_mariadb_datadir() -> None:
    """Create the system tables when the data dir was never initialised (apt usually did it)."""
    if (MARIADB_DATADIR / "mysql").is_dir():
        return
    tool = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if tool is None:
        raise StackError(
            "the MariaDB data directory is empty and mariadb-install-db is missing",
            expected=f"{MARIADB_DATADIR}/mysql or mariadb-install-db",
            found="neither",
            remedy="apt-get install --reinstall -y mariadb-server",
        )
    log = log_path("mariadb")
    with log.open("ab") as out:
        result = subprocess.run(
            [tool, "--user=mysql", f"--datadir={MARIADB_DATADIR}", "--skip-test-db",
             "--auth-root-authentication-method=socket"],
            stdout=out, stderr=subprocess.STDOUT, check=False,
            env={k: v for k, v in os.environ.items() if k != "TMPDIR"},  # as for mariadbd
        )
    if result.returncode != 0:
        raise StackError(
            "initialising the MariaDB data directory failed",
            expected=f"system tables in {MARIADB_DATADIR}",
            found=f"exit {result.returncode}; last lines of {log}:\n    {log_tail(log)}",
            remedy=f"read {log}",
        )


def ensure_mariadb(home: Path | None = None, timeout: float = DEFAULT_WAIT) -> DaemonResult:
    """Start mariadbd on 127.0.0.1:<GANGWAY_MYSQL_PORT> unless a MySQL server answers there."""
    port = ports().mysql
    endpoint = f"{LOOPBACK}:{port}"

    def start() -> int:
        _need_local_start("mariadb", f"a MySQL server on {endpoint}")
        mariadbd = Path("/usr/sbin/mariadbd")
        if not mariadbd.exists():
            raise StackError(
                "mariadbd is not installed",
                expected=str(mariadbd),
                found="no such file",
                remedy="apt-get install -y mariadb-server",
            )
        _init_mariadb_datadir()
        # The socket directory lives on /run, which a reboot empties.
        MARIADB_RUNDIR.mkdir(parents=True, exist_ok=True)
        shutil.chown(MARIADB_RUNDIR, "mysql", "mysql")
        pidfile = pid_path("mariadb", home)
        log = log_path("mariadb", home)
        with log.open("ab") as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"\n=== {stamp} gangway starts mariadb\n".encode())
        result = subprocess.run(
            ["start-stop-daemon", "--start", "--oknodo", "--background",
             "--make-pidfile", f"--pidfile={pidfile}", f"--output={log}",
             "--exec", str(mariadbd), "--",
             "--user=mysql", f"--datadir={MARIADB_DATADIR}",
             f"--socket={MARIADB_RUNDIR / 'mysqld.sock'}",
             # Not the caller's $TMPDIR: mariadbd runs as mysql and may not write there.
             f"--tmpdir={MARIADB_RUNDIR}",
             f"--pid-file={MARIADB_RUNDIR / 'mysqld.pid'}",
             f"--bind-address={LOOPBACK}", f"--port={port}"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(
                "start-stop-daemon could not start mariadbd",
                expected=f"mariadbd listening on {endpoint}",
                found=(result.stderr or result.stdout).strip()[-500:],
                remedy=f"read {log}",
            )
        # start-stop-daemon writes the pid file from its forked child: wait for it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not pidfile.exists():
            time.sleep(0.05)
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            # --oknodo: a mariadbd we did not start was already there (still starting up).
            raise StackError(
                "mariadbd is running but not answering, and gangway did not start it",
                expected=f"a MySQL server answering on {endpoint}",
                found="a mariadbd process without a gangway pid file",
                remedy="wait for it or stop it (start-stop-daemon --stop --exec "
                "/usr/sbin/mariadbd), then `up`",
            ) from exc
        write_pid("mariadb", pid, home)
        return pid

    return ensure_daemon("mariadb", endpoint, lambda: mysql_ready(port), start, timeout=timeout,
                   home=home)


def registry_config(home: Path | None = None) -> Path:
    """Write the registry's config (loopback, filesystem storage, delete on) and return its path."""
    return write_registry_config("registry", f"{LOOPBACK}:{ports().registry}", "", home)


def write_registry_config(name: str, addr: str, auth: str, home: Path | None = None) -> Path:
    """Write <home>/<name>/config.yml for a docker-registry on addr (auth: its YAML block, or
    ''), unchanged when it already says so; returns its path."""
    root = home_dir(name, home)
    data = home_dir(f"{name}/data", home)
    config = root / "config.yml"
    text = (
        "# Written by gangway's rehearsal stack; rewritten on every `up`.\n"
        "version: 0.1\n"
        "log:\n"
        "  level: info\n"
        "  accesslog:\n"
        "    disabled: true\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {data}\n"
        "  delete:\n"
        "    enabled: true\n"
        "  cache:\n"
        "    blobdescriptor: inmemory\n"
        f"{auth}"
        "http:\n"
        f"  addr: {addr}\n"
        "  headers:\n"
        "    X-Content-Type-Options: [nosniff]\n"
    )
    if not config.exists() or config.read_text() != text:
        config.write_text(text)
    return config


def ensure_registry(home: Path | None = None, timeout: float = DEFAULT_WAIT) -> DaemonResult:
    """Start `docker-registry serve <home>/registry/config.yml` unless /v2/ already answers."""
    port = ports().registry
    endpoint = f"http://{LOOPBACK}:{port}"

    def start() -> int:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise StackError(
                "docker-registry is not installed",
                expected="/usr/bin/docker-registry (package docker-registry)",
                found="not on PATH",
                remedy="apt-get install -y docker-registry, or run any OCI registry on "
                f"{LOOPBACK}:{port}",
            )
        return spawn("registry", [binary, "serve", str(registry_config(home))], home=home)

    return ensure_daemon("registry", endpoint, lambda: registry_ready(port), start, timeout=timeout,
                   home=home)


def prefect_env(home: Path | None = None) -> dict[str, str]:
    """The Prefect variables the stack and its clients share (home, API URL, no telemetry)."""
    return {
        "PREFECT_HOME": str(home_dir("prefect", home)),
        "PREFECT_API_URL": f"http://{LOOPBACK}:{ports().prefect}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def prefect_executable() -> str:
    """The ``prefect`` command of this venv (beside the interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "prefect"
    if beside.exists():
        return str(beside)
    found = shutil.which("prefect")
    if found is None:
        raise StackError(
            "the prefect command is not installed",
            expected=f"prefect beside {sys.executable}",
            found="not found",
            remedy="pip install -e . (prefect is a dependency of gangway)",
        )
    return found


def _spawn_prefect(home: Path | None = None) -> int:
    env = {**os.environ, **prefect_env(home)}
    # The server must not think it is a client of some other API.
    env.pop("PREFECT_API_KEY", None)
    port = ports().prefect
    return spawn(
        "prefect",
        [prefect_executable(), "server", "start", "--host", LOOPBACK, "--port", str(port)],
        env=env,
        home=home,
    )


def start_prefect(home: Path | None = None) -> int | None:
    """Launch the Prefect server in the background without waiting; its new pid, or None."""
    port = ports().prefect
    endpoint = f"http://{LOOPBACK}:{port}/api"
    if prefect_ready(port):
        return None
    if owned_pid("prefect", home) is not None:
        # Ours, still starting (ensure_prefect waits) or on another port (it replaces it).
        return None
    pid = _spawn_prefect(home)
    write_pid("prefect", pid, home, endpoint)
    return pid


def ensure_prefect(home: Path | None = None, timeout: float = 120.0) -> DaemonResult:
    """Start (or wait for) a shared local Prefect server; health is GET /api/health."""
    port = ports().prefect
    # A first start migrates its SQLite database: allow more than the other daemons.
    return ensure_daemon("prefect", f"http://{LOOPBACK}:{port}/api",
                         lambda: prefect_ready(port), lambda: _spawn_prefect(home),
                         timeout=timeout, home=home)


# Reverse start order: clients before the services they use.
STOP_ORDER = ("prefect-worker", "prefect", "moto", "registry-auth", "registry", "mariadb",
              "dockerd")


def stop_all(home: Path | None = None) -> list[str]:
    """Stop every daemon the stack started (pid files); others are left alone. Returns names."""
    stopped = []
    known = list(STOP_ORDER)
    run_dir = home_dir("run", home)
    known += sorted(p.stem for p in run_dir.glob("*.pid") if p.stem not in known)
    for name in known:
        pid = owned_pid(name, home)
        if pid is None:
            continue
        # dockerd stops its containers first; mariadbd flushes InnoDB: give them time.
        stop_pid(name, pid, timeout=60.0 if name in ("dockerd", "mariadb") else 20.0)
        pid_path(name, home).unlink(missing_ok=True)
        stopped.append(name)
    return stopped
