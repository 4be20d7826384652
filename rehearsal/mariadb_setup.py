"""Per-environment databases and users on the rehearsal MariaDB, and the stack's env file.

``<home>/stack.env`` (mode 600) holds what the rehearsal environments reference as ``${VAR}``:
generated once with :mod:`secrets`, then kept. The database user of each environment gets
ALL on its own database only and connects over TCP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gangway.config import available_environments, deployments_dir, gangway_home
from gangway.errors import StackError
from rehearsal.system import LOOPBACK, MARIADB_RUNDIR, ports, prefect_env

SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAFE_VALUE = re.compile(r"[A-Za-z0-9_./:@+,=-]*")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# A TCP login from 127.0.0.1 matches 'localhost' when the server resolves names and
# '127.0.0.1' when it does not (skip-name-resolve): create both.
USER_HOSTS = ("127.0.0.1", "localhost")

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "ap-southeast-1",
}


@dataclass(frozen=True)
class DatabasePlan:
    """One environment's database as the TOML files describe it (read without load_config)."""

    env: str
    name: str
    user: str
    password_env: str
    host: str
    port: int
    secret_vars: tuple[str, ...]
    # False for a service that declares no [environment.database]: nothing is created for it.
    declared: bool = True

    @property
    def local(self) -> bool:
        """Whether this database lives on the rehearsal MariaDB (never touch a real one)."""
        return self.host in LOCAL_HOSTS


def stack_env_path(home: Path | None = None) -> Path:
    """``<home>/stack.env``."""
    return (home or gangway_home()) / "stack.env"


def _env_key(env: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", env).upper()


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return SECRET_REF.findall(value)
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list | tuple):
        return [ref for item in value for ref in _refs(item)]
    return []


def database_plan(env: str, directory: Path | None = None) -> DatabasePlan:
    """Read the env's database name/user/password variable straight from the TOML files.

    load_config() cannot be used here: it needs the password variable this module creates.
    """
    directory = directory or deployments_dir()
    merged: dict[str, Any] = {}
    for path in (directory / "service.toml", directory / f"{env}.toml"):
        try:
            _merge(merged, tomllib.loads(path.read_text()))
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise StackError(
                f"cannot read {path.name}",
                expected="a valid TOML file",
                found=str(exc),
                remedy=f"fix {path}",
            ) from exc
    service = str(merged.get("service", {}).get("name", "daily-report")).replace("-", "_")
    declared = "database" in merged.get("environment", {})
    db = merged.get("environment", {}).get("database", {})
    key = _env_key(env)
    name = str(db.get("name", f"{service}_{env}"))
    user = str(db.get("user", name))
    password_env = str(db.get("password_env", f"GANGWAY_{key}_DB_PASSWORD"))
    for what, value in (("database name", name), ("database user", user)):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
            raise StackError(
                f"{env}: the {what} {value!r} is not a plain SQL identifier",
                expected="letters, digits, underscore (max 64)",
                found=repr(value),
                remedy=f"fix environment.database in {env}.toml",
            )
    # Only what the configuration declares: the database password when it has a database, and
    # every ${VAR} it references. Nothing is invented for a service that does not ask for it.
    wanted = [password_env] if declared else []
    wanted += _refs(merged)
    wanted += _terraform_refs(directory.parent, env)
    return DatabasePlan(
        env=env,
        name=name,
        user=user,
        password_env=password_env,
        host=str(db.get("host", LOOPBACK)),
        port=int(db.get("port", ports().mysql)),
        secret_vars=tuple(dict.fromkeys(wanted)),
        declared=declared,
    )


def _terraform_refs(root: Path, env: str) -> list[str]:
    """The secret variables a terraform/ folder's functions reference (issue 15: where one
    exists, the env values live there, not in the TOML files)."""
    from gangway import terraform

    declaration = terraform.read(root, env) if terraform.folder(root) else None
    if declaration is None:
        return []
    return [
        ref for fn in declaration.functions.values() for v in fn.env.values() for ref in _refs(v)
    ]


# --------------------------------------------------------------------------- stack.env


def read_stack_env(path: Path | None = None) -> dict[str, str]:
    """The KEY=value pairs of stack.env (empty when the file does not exist)."""
    from dotenv import dotenv_values

    path = path or stack_env_path()
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _quote(value: str) -> str:
    if SAFE_VALUE.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_stack_env(values: dict[str, str], path: Path | None = None) -> Path:
    """Write stack.env atomically with mode 600 (it holds the rehearsal's secrets)."""
    path = path or stack_env_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by gangway's rehearsal stack (`up`). Secrets are generated once and kept;",
        "# edit a value here and the next `up` applies it (e.g. resets the database password).",
        *(f"{key}={_quote(value)}" for key, value in values.items()),
    ]
    fd, tmp = tempfile.mkstemp(prefix=".stack.env.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def ensure_stack_env(plans: list[DatabasePlan], home: Path | None = None) -> dict[str, str]:
    """Add missing secrets and the stack's endpoints to stack.env; existing secrets are kept."""
    path = stack_env_path(home)
    existing = read_stack_env(path)
    values: dict[str, str] = {}
    # Endpoints follow the current ports and home; everything else already there is kept.
    derived = {**AWS_TEST_ENV, **prefect_env(home)}
    for key, value in derived.items():
        values[key] = value if key.startswith("PREFECT_") else existing.get(key, value)
    if values["AWS_SECRET_ACCESS_KEY"] == AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"]:
        # moto accepts any secret; a unique one lets the fault matrix scan every log,
        # artifact and ledger record for it (a word like "testing" would match prose).
        values["AWS_SECRET_ACCESS_KEY"] = secrets.token_urlsafe(30)
    for plan in plans:
        for var in plan.secret_vars:
            values[var] = existing.get(var) or secrets.token_urlsafe(24)
    for key, value in existing.items():
        values.setdefault(key, value)
    if values != existing or not path.exists() or (path.stat().st_mode & 0o777) != 0o600:
        write_stack_env(values, path)
    return values


# --------------------------------------------------------------------------- MariaDB


def _admin_connection() -> Any:
    """Root over the unix socket (or GANGWAY_MYSQL_ADMIN_USER/_PASSWORD over TCP)."""
    import pymysql

    user = os.environ.get("GANGWAY_MYSQL_ADMIN_USER")
    socket_path = Path(os.environ.get("GANGWAY_MYSQL_SOCKET", MARIADB_RUNDIR / "mysqld.sock"))
    try:
        if user:
            return pymysql.connect(
                host=LOOPBACK, port=ports().mysql, user=user,
                password=os.environ.get("GANGWAY_MYSQL_ADMIN_PASSWORD", ""),
                connect_timeout=5, autocommit=True,
            )
        return pymysql.connect(unix_socket=str(socket_path), user="root", connect_timeout=5,
                               autocommit=True)
    except pymysql.MySQLError as exc:
        raise StackError(
            "cannot log in to MySQL as an administrator",
            expected=f"root over the unix socket {socket_path} (socket authentication), or "
            "GANGWAY_MYSQL_ADMIN_USER/GANGWAY_MYSQL_ADMIN_PASSWORD over TCP",
            found=f"{type(exc).__name__}: {exc.args[-1] if exc.args else exc}",
            remedy="run `up` as root on the machine running MariaDB, or set "
            "GANGWAY_MYSQL_ADMIN_USER and GANGWAY_MYSQL_ADMIN_PASSWORD",
        ) from exc


def _apply(cursor: Any, plan: DatabasePlan, password: str) -> None:
    # Identifiers were validated as plain names above; values go through the driver's quoting.
    cursor.execute(
        f"CREATE DATABASE IF NOT EXISTS `{plan.name}` "
        "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    )
    for host in USER_HOSTS:
        cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                       (plan.user, host, password))
        # Always reset: a user left from an earlier stack may hold another password.
        cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s", (plan.user, host, password))
        cursor.execute("SHOW GRANTS FOR %s@%s", (plan.user, host))
        grants = [row[0] for row in cursor.fetchall()]
        own = f"GRANT ALL PRIVILEGES ON `{plan.name}`.* TO "
        extra = [g for g in grants if not g.startswith(("GRANT USAGE ON *.* TO ", own))]
        if extra:
            # ALL on its own database only: drop whatever else it was granted before.
            cursor.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (plan.user, host))
        if extra or not any(g.startswith(own) for g in grants):
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{plan.name}`.* TO %s@%s",
                           (plan.user, host))


def _check_login(plan: DatabasePlan, password: str) -> None:
    import pymysql

    try:
        conn = pymysql.connect(host=LOOPBACK, port=ports().mysql, user=plan.user,
                               password=password, database=plan.name, connect_timeout=5)
        conn.close()
    except pymysql.MySQLError as exc:
        raise StackError(
            f"{plan.env}: the database user cannot log in over TCP after set-up",
            expected=f"{plan.user}@{LOOPBACK}:{ports().mysql}/{plan.name} accepting the password "
            f"in {plan.password_env}",
            found=f"{type(exc).__name__}: {exc.args[-1] if exc.args else exc}",
            remedy="check the server's users (SELECT user, host FROM mysql.user) for a "
            "conflicting anonymous or wildcard user",
        ) from exc


def ensure_databases(
    envs: list[str] | None = None, home: Path | None = None, directory: Path | None = None
) -> list[str]:
    """Create/update each env's database, user and password; returns the databases set up.

    directory: the deployments/ folder of the service (default: the current project's)."""
    import pymysql

    envs = envs if envs is not None else available_environments(directory)
    plans = [database_plan(env, directory) for env in envs]
    values = ensure_stack_env(plans, home)
    local = [plan for plan in plans if plan.declared and plan.local]
    if not local:
        return []
    conn = _admin_connection()
    try:
        with conn.cursor() as cursor:
            for plan in local:
                try:
                    _apply(cursor, plan, values[plan.password_env])
                except pymysql.MySQLError as exc:
                    raise StackError(
                        f"{plan.env}: creating database {plan.name} / user {plan.user} failed",
                        expected="CREATE DATABASE / CREATE USER / GRANT to succeed",
                        found=f"{type(exc).__name__}: {exc.args[-1] if exc.args else exc}",
                        remedy="check that the admin login may create users (CREATE USER, "
                        "GRANT OPTION)",
                    ) from exc
    finally:
        conn.close()
    for plan in local:
        _check_login(plan, values[plan.password_env])
    return [plan.name for plan in local]
