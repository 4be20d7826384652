"""The rehearsal's second registry: one that requires a login, as ECR does.

A second `docker-registry serve` with its own config file, port (GANGWAY_AUTH_REGISTRY_PORT,
default 5001) and storage under <home>/registry-auth, and `auth: htpasswd` with a bcrypt
entry for USER. The password is generated once into stack.env (GANGWAY_REGISTRY_PASSWORD),
like the database passwords, and the environments that use this registry name that variable
in [environment.registry_auth]. dockerd pushes to it without TLS: the engine treats
127.0.0.0/8 as an insecure registry by default.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import httpx

from gangway.errors import StackError
from rehearsal import mariadb_setup
from rehearsal.system import (
    LOOPBACK,
    DaemonResult,
    ensure_daemon,
    env_port,
    home_dir,
    spawn,
    write_registry_config,
)

NAME = "registry-auth"
USER = "gangway"
PASSWORD_ENV = "GANGWAY_REGISTRY_PASSWORD"
DEFAULT_PORT = 5001


def port() -> int:
    """GANGWAY_AUTH_REGISTRY_PORT, else 5001."""
    return env_port("GANGWAY_AUTH_REGISTRY_PORT", DEFAULT_PORT)


def endpoint(at: int | None = None) -> str:
    """host:port of the registry, as environment.registry names it."""
    return f"{LOOPBACK}:{at or port()}"


def ready(at: int | None = None) -> bool:
    """True when /v2/ answers as a distribution registry that asks for a login (HTTP 401)."""
    try:
        response = httpx.get(f"http://{endpoint(at)}/v2/", timeout=2.0, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 401 and response.headers.get(
        "Docker-Distribution-Api-Version", ""
    ).startswith("registry/2")


def ensure_password(home: Path | None = None) -> str:
    """The registry password from stack.env, generated (and written, mode 600) on first use."""
    path = mariadb_setup.stack_env_path(home)
    values = mariadb_setup.read_stack_env(path)
    if not values.get(PASSWORD_ENV):
        values[PASSWORD_ENV] = secrets.token_urlsafe(24)
        mariadb_setup.write_stack_env(values, path)
    return values[PASSWORD_ENV]


def write_htpasswd(password: str, home: Path | None = None) -> Path:
    """<home>/registry-auth/htpasswd with USER's bcrypt hash (kept when it still matches)."""
    import bcrypt

    path = home_dir(NAME, home) / "htpasswd"
    try:
        user, _, hashed = path.read_text().strip().partition(":")
        if user == USER and bcrypt.checkpw(password.encode(), hashed.encode()):
            return path
    except (OSError, ValueError):
        pass
    # distribution's htpasswd reader accepts bcrypt only ($2y$ / $2b$).
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    path.write_text(f"{USER}:{hashed}\n")
    path.chmod(0o600)
    return path


def write_config(htpasswd: Path, at: int | None = None, home: Path | None = None) -> Path:
    """The registry's config file (its own port, storage and htpasswd auth); returns its path."""
    auth = f"auth:\n  htpasswd:\n    realm: gangway-rehearsal\n    path: {htpasswd}\n"
    return write_registry_config(NAME, endpoint(at), auth, home)


def ensure(home: Path | None = None, at: int | None = None, timeout: float = 60.0) -> DaemonResult:
    """Start the authenticating registry unless it answers; its password lands in stack.env."""
    at = at or port()
    password = ensure_password(home)
    config = write_config(write_htpasswd(password, home), at, home)

    def start() -> int:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise StackError(
                "docker-registry is not installed",
                expected="/usr/bin/docker-registry (package docker-registry)",
                found="not on PATH",
                remedy="apt-get install -y docker-registry",
            )
        return spawn(NAME, [binary, "serve", str(config)], home=home)

    return ensure_daemon(NAME, f"http://{endpoint(at)}", lambda: ready(at), start,
                         timeout=timeout, home=home)
