"""Deployment configuration: what service is deployed (service.toml) and where (<env>.toml).

Read through pydantic-settings from TOML files plus ``GANGWAY_*`` environment overrides, and
validated completely before any side effect. Secret values are referenced as ``${VAR}`` and
resolved from the process environment (or the rehearsal stack's env file); they are kept in
``SecretStr`` and never rendered.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
import types
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gangway.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
# \A..\Z, not ^..$: `$` also matches before a trailing newline, so "name\n" would pass.
IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
ENV_NAME = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")
SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
HANDLER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
# AWS's rules for a function name given to CreateFunction: a name, or the function's full ARN.
FUNCTION_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
FUNCTION_ARN = re.compile(
    r"\Aarn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z]{2}(-gov)?-[a-z]+-\d):\d{12}:function:"
    r"[A-Za-z0-9_-]{1,64}\Z"
)
MAX_CONFIG_BYTES = 1 << 20  # far above any real service.toml; refused before parsing


def read_toml(path: Path) -> dict[str, Any]:
    """A gangway TOML file (at most 1 MiB), parsed; ConfigError naming the file otherwise."""
    refuse_large(
        path, MAX_CONFIG_BYTES, "to be a configuration file", "1 MiB",
        f"trim {path.name} to the service's settings (is it the right file?)",
    )
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path.name} is not valid TOML",
            expected="a TOML document",
            found=str(exc),
            remedy=f"fix the syntax in {path}",
        ) from exc


def refuse_large(path: Path, limit: int, what: str, limit_words: str, remedy: str) -> None:
    """ConfigError, before reading it, when the file at path is larger than limit bytes."""
    size = path.stat().st_size
    if size > limit:
        raise ConfigError(
            f"{path.name} is too large {what}",
            expected=f"at most {limit} bytes ({limit_words})",
            found=f"{size} bytes in {path}",
            remedy=remedy,
        )


def _identifier(value: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a plain SQL identifier (letters, digits, underscore; "
            "max 64); it is refused before any SQL runs"
        )
    return value


class EnvText(str):
    """A GANGWAY_* override's value: text by nature, read as a JSON literal where the setting
    is a number or a boolean (``5``, ``2.5``, ``true``), as plain text everywhere else."""


def _scalar_kinds(annotation: Any) -> tuple[type, ...]:
    """The number/boolean types a field accepts (through ``X | None``); () for anything else."""
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(k for arg in get_args(annotation) for k in _scalar_kinds(arg))
    return (annotation,) if annotation in (bool, int, float) else ()


def _strict_scalar(value: Any, kinds: tuple[type, ...], optional: bool) -> Any:
    """The value when it already is one of kinds (a finite one), else ValueError.

    pydantic's lax mode turns ``true`` into 1 and ``"512"`` into 512 without a word; a
    config value of the wrong type is a mistake to name, not to guess at.
    """
    if isinstance(value, EnvText):
        try:
            value = json.loads(value)
        except ValueError:
            value = str(value)
    if value is None and optional:
        return None
    if isinstance(value, bool):
        ok = bool in kinds
    elif isinstance(value, int):
        ok = int in kinds or float in kinds
    elif isinstance(value, float):
        ok = float in kinds
    else:
        ok = False
    if ok and isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, found {value!r}")
    if not ok:
        wanted = " or ".join(
            {bool: "a boolean (true/false)", int: "an integer", float: "a number"}[k] for k in kinds
        )
        found = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}.get(
            type(value), type(value).__name__
        )
        shown = json.dumps(value) if isinstance(value, bool) else repr(value)
        hint = "; write it without quotes" if isinstance(value, str) else ""
        raise ValueError(f"expected {wanted}, found {found} {shown}{hint}")
    return value


class Strict(BaseModel):
    """Base for config sections: unknown keys are typos, and numbers/booleans are typed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        kinds = _scalar_kinds(annotation)
        if kinds:
            optional = type(None) in get_args(annotation)
            return _strict_scalar(value, kinds, optional)
        return str(value) if isinstance(value, EnvText) else value


class BuildSpec(Strict):
    """How the service image is built."""

    context: Path = Path("service")
    dockerfile: str = "Dockerfile"
    repository: str = Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
    vendor_requirements: str | None = None
    # A Dockerfile (in the context) that bakes vendor/ into an image of its own, which the
    # service's Dockerfile starts FROM (build arg DEPS_IMAGE): built once per dependency set,
    # so a build's context holds only the code (tasks/image_build.py).
    deps_dockerfile: str | None = None
    # Passed to the Dockerfiles' ARGs; each must be declared by one (checked before a build).
    build_args: dict[str, str] = Field(default_factory=dict)
    python: str = Field(default="3.11", pattern=r"^3\.\d+$")
    # The build containers' network (docker build's network_mode); None = the engine's default.
    network: str | None = None


class FunctionSpec(Strict):
    """One Lambda function: a handler in the shared image plus its runtime settings."""

    handler: str
    name: str | None = None
    required_env: tuple[str, ...] = ()
    timeout: int = Field(default=30, ge=1, le=900)
    memory: int = Field(default=512, ge=128, le=10240)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    env: dict[str, str] = Field(default_factory=dict)
    # true: the code validates required_env at import, so a cold start without a setting fails
    # naming it (the in-image gate proves it with a start-up without the environment).
    startup_validation: bool = False
    # true: the infrastructure sets this function's ImageConfig.Command to its handler (one
    # image, several handlers); false: the function runs the image's own CMD.
    command_override: bool = False
    # false: the function writes no application log lines by design (a pure computation);
    # the log scan then asks only for its START/END/REPORT lines and no errors.
    app_logs: bool = True
    # The deadline of the synchronous caller in front of the function (API Gateway's 29 s):
    # the headroom gate blocks a function whose invokes approach it, even within its timeout.
    client_deadline_s: float | None = Field(default=None, gt=0, le=900)
    # Per-function overrides of environment.deploy's headroom thresholds (None: the env's).
    duration_headroom: float | None = Field(default=None, gt=0, le=1)
    memory_headroom: float | None = Field(default=None, gt=0, le=1)
    client_deadline_headroom: float | None = Field(default=None, gt=0, le=1)

    @field_validator("handler")
    @classmethod
    def _handler_shape(cls, value: str) -> str:
        if not HANDLER.fullmatch(value):
            raise ValueError(f"handler {value!r} must look like 'package.module.function'")
        return value

    @property
    def module(self) -> str:
        """The handler's module path."""
        return self.handler.rsplit(".", 1)[0]

    @property
    def attribute(self) -> str:
        """The handler's function name inside its module."""
        return self.handler.rsplit(".", 1)[1]


class ColumnSpec(Strict):
    """A column the code writes, with the type family and nullability it relies on."""

    type: Literal["varchar", "text", "json", "date", "datetime", "int", "bigint", "decimal", "bool"]
    nullable: bool = True
    length: int | None = None


class TableContract(Strict):
    """The columns one or more handlers write into a table."""

    name: str
    writers: tuple[str, ...]
    columns: dict[str, ColumnSpec]

    @field_validator("name")
    @classmethod
    def _table_name(cls, value: str) -> str:
        return _identifier(value, "table name")

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        for column in value:
            _identifier(column, "column name")
        return value


class ServiceSpec(Strict):
    """The service being deployed: its image, functions and data contract."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    build: BuildSpec
    # The service's alembic folder, relative to the project; none declared = no migrations.
    # No default: a default would point at some other service's migrations.
    migrations: Path | None = None


class AwsSpec(Strict):
    """Where the AWS control plane is; endpoint_url is set only for a rehearsal stack."""

    region: str = "ap-southeast-1"
    endpoint_url: str | None = None
    # --- issue 14 (wt-copy): per-environment AWS credentials --------------------------------
    # A named profile of the shared config/credentials files, or a role assumed through STS
    # (on endpoint_url when set). Neither: the process's default credential chain.
    profile: str | None = None
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/.+")
    external_id: str | None = None
    session_name: str | None = Field(default=None, pattern=r"^[\w+=,.@-]{2,64}$")

    @model_validator(mode="after")
    def _one_identity(self) -> AwsSpec:
        if self.profile and self.role_arn:
            raise ValueError("set environment.aws.profile or environment.aws.role_arn, not both")
        if (self.external_id or self.session_name) and not self.role_arn:
            raise ValueError("external_id and session_name need environment.aws.role_arn")
        return self


# --- issue 14 (wt-copy): per-environment registry credentials -------------------------------
class RegistryAuthSpec(Strict):
    """Credentials for environment.registry; the password is read from the named variable."""

    username: str = Field(min_length=1)
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class DatabaseSpec(Strict):
    """The environment's MySQL database; the password is read from the named variable."""

    host: str
    port: int = Field(default=3306, ge=1, le=65535)
    name: str
    user: str
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("name", "user")
    @classmethod
    def _db_identifiers(cls, value: str) -> str:
        return _identifier(value, "database name/user")


class RowTruth(Strict):
    """A row a smoke case must leave behind: matched by values, then checked column by column.

    Values may be literals, ``{correlation_id}`` (the case's generated id) or ``$.field`` (a
    field of the invoke's JSON response).
    """

    table: str
    match: dict[str, Any]
    not_null: tuple[str, ...] = ()
    equals: dict[str, Any] = Field(default_factory=dict)
    contains: dict[str, str] = Field(default_factory=dict)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return _identifier(value, "table name")

    @field_validator("match", "equals", "contains")
    @classmethod
    def _columns(cls, value: dict[str, Any]) -> dict[str, Any]:
        for column in value:
            _identifier(column, "column name")
        return value

    @field_validator("not_null")
    @classmethod
    def _not_null(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for column in value:
            _identifier(column, "column name")
        return value


class ObjectTruth(Strict):
    """An object a smoke case must leave in a bucket (default: the environment's bucket)."""

    key: str
    bucket: str | None = None
    content_type: str | None = None
    size: Any = None
    min_size: int = 1


class GroundTruth(Strict):
    """What must be true in storage after a smoke invoke."""

    row: RowTruth | None = None
    object: ObjectTruth | None = None


class SmokeCase(Strict):
    """One smoke invoke of a function and what its response and ground truth must show.

    ``event`` (or the JSON file ``event_file``) may contain ``{correlation_id}``;
    ``status_code`` applies to proxy-style responses (``{"statusCode": …, "body": …}``);
    ``expect`` compares top-level response fields (or body fields for proxy responses) with
    values. Cases of different functions run concurrently; ``after`` names earlier cases (of
    other functions) whose effects this one reads, so it starts only once they have finished.
    """

    name: str
    function: str
    event: dict[str, Any] = Field(default_factory=dict)
    # A JSON file (relative to the project root) holding the event, instead of ``event``: read
    # once during validation into ``event``, so JSON nulls reach the invoke as nulls.
    event_file: str | None = None
    expect_fields: tuple[str, ...] = ()
    expect: dict[str, Any] = Field(default_factory=dict)
    status_code: int | None = None
    ground_truth: GroundTruth | None = None
    after: tuple[str, ...] = ()


class DeployPolicy(Strict):
    """How a deploy to this environment behaves when not told otherwise."""

    error_rate_threshold: float = Field(default=0.05, ge=0, le=1)
    bake_invoke_interval_s: float = Field(default=2.0, gt=0)
    lock_timeout_s: int = Field(default=30, ge=0)
    # How often the deploy lock's heartbeat re-checks that this deploy still holds it
    # (tasks/env_lock.py). A lost lock is seen within this plus the check's own bounded wait.
    lock_heartbeat_s: float = Field(default=1.0, gt=0)
    invoke_timeout_s: int = Field(default=120, ge=1)
    # How long a rollback retries an AWS that does not answer (tasks/lambda_alias.py). 60 s
    # rides out what is transient in practice (a reset connection, an endpoint or DNS
    # failover, a throttling burst) while the new version still takes traffic; beyond that a
    # human must know now (rollback FAILED). The restore step's 120 s timeout bounds it.
    restore_window_s: float = Field(default=60.0, ge=0, le=100)
    # How long a Lambda write (UpdateFunctionCode, PublishVersion, UpdateAlias) refused with
    # ResourceConflictException (another update of the function in progress) is retried, with
    # exponential backoff and jitter (tasks/aws.py retry_conflicts). An image update is
    # InProgress for seconds to about a minute on AWS; past the budget someone else is
    # updating the function and a human must look. Bounded so the deploy and shift steps'
    # timeouts (600 s, 120 s) hold.
    conflict_retry_s: float = Field(default=60.0, ge=0, le=90)
    # How long a read-back waits for an alias write to show: GetAlias is eventually
    # consistent and may return the value from before the write for a few seconds
    # (tasks/lambda_alias.py). Only after this is a read-back that disagrees a failure.
    alias_read_window_s: float = Field(default=5.0, ge=0, le=15)
    # The longest canary bake allowed: a bake holds the environment's deploy lock throughout.
    max_bake_s: int = Field(default=3600, gt=0)
    # A canary bake judges the new version only on traffic it really served inside the bake
    # window: with fewer invocations than this it ends inconclusive (rolled back), as Argo
    # Rollouts does, because "0 errors in 2 invocations" proves nothing. Real and synthetic
    # invocations count alike.
    min_canary_invocations: int = Field(default=20, ge=1)
    # The bake also compares the canary's error rate with the stable version's over the same
    # window (tasks/noninferiority.py): it passes only when the canary is shown, at this
    # one-sided confidence, to be at most this much (absolute) worse than stable. 5
    # percentage points matches error_rate_threshold, so the test never tolerates more than
    # the ceiling already does, and a clean canary proves it after 52 invocations; a tighter
    # margin needs many more (1 pp: about 270), which only high-traffic bakes reach.
    noninferiority_margin: float = Field(default=0.05, ge=0, le=1)
    noninferiority_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    # Synthetic invokes of the smoke cases (those without ground truth) through the alias
    # during the bake; off, the bake only waits for and counts real traffic.
    bake_synthetic: bool = True
    # How long the bake's count waits for the log lines of the invokes known to have run the
    # new version (log delivery lags on AWS); it ends as soon as all have arrived.
    bake_log_wait_s: float = Field(default=30.0, gt=0, le=300)
    # How long the log scan waits for each smoke invoke's START, END and REPORT lines to be
    # readable (CloudWatch Logs ingests with a delay); lines later than this are a trigger.
    log_ingestion_s: float = Field(default=30.0, gt=0, le=300)
    # Headroom (tasks/headroom.py): every smoke and bake invoke's REPORT must show a
    # Duration at most this share of the function's timeout (and of its client deadline,
    # when set) and a Max Memory Used at most this share of its memory size.
    duration_headroom: float = Field(default=0.8, gt=0, le=1)
    memory_headroom: float = Field(default=0.9, gt=0, le=1)
    client_deadline_headroom: float = Field(default=0.8, gt=0, le=1)
    # The strongest evidence a deploy here must reach: a service whose smoke cases prove no
    # ground truth is refused by an environment that requires it, before anything moves.
    require: Literal["smoke", "observability", "ground-truth"] = "smoke"


# --- promotion (issue 14, wt-promote) ---------------------------------------------------
class PromotionSpec(Strict):
    """How an image reaches this environment by promotion (`gangway promote --to ENV`)."""

    # How long the digest must have been live in the source environment (from the end of
    # the source record) before it may come here; 0 allows it at once.
    soak_s: float = Field(default=0, ge=0)
    # A human must approve a promotion here (flows/approval.py), before the lock is taken.
    approval: bool = False
    approval_timeout_s: float = Field(default=3600, gt=0)
    # The declared path: the environments this one may be promoted from (empty: any).
    from_envs: tuple[str, ...] = ()


# --- end of promotion ----------------------------------------------------------------------


class EnvironmentSpec(Strict):
    """Where one environment lives."""

    name: str
    alias: str = Field(default="live", pattern=r"^[A-Za-z0-9_-]{1,128}$")
    registry: str
    # Both optional: a service without a bucket or a database declares neither, and then
    # has no steps (or ground truth) that need them.
    bucket: str | None = None
    aws: AwsSpec = AwsSpec()
    database: DatabaseSpec | None = None
    deploy: DeployPolicy = DeployPolicy()
    # --- issue 14 (wt-copy): None = the registry is read and written anonymously
    registry_auth: RegistryAuthSpec | None = None
    promotion: PromotionSpec = PromotionSpec()  # issue 14 (wt-promote)


class DeploySettings(BaseSettings):
    """service.toml deep-merged with <env>.toml, then GANGWAY_* env overrides (``__`` nests)."""

    model_config = SettingsConfigDict(
        env_prefix="GANGWAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    service: ServiceSpec
    environment: EnvironmentSpec
    functions: dict[str, FunctionSpec]
    function_env: dict[str, str] = Field(default_factory=dict)
    tables: tuple[TableContract, ...] = ()
    smoke: tuple[SmokeCase, ...] = ()

    toml_files: ClassVar[tuple[Path, ...]] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the TOML files; init kwargs override both."""
        merged: dict[str, Any] = {}
        for path in cls.toml_files:
            _deep_merge(merged, tomllib.loads(path.read_text()))
        toml = InitSettingsSource(settings_cls, merged)
        return (init_settings, _EnvOverrides(settings_cls), toml)


class _EnvOverrides(EnvSettingsSource):
    """GANGWAY_* variables, their text values marked as such (see EnvText)."""

    def __call__(self) -> dict[str, Any]:
        return _mark_env(super().__call__())


def _mark_env(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mark_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_env(v) for v in value]
    return EnvText(value) if isinstance(value, str) else value


def _non_finite(value: Any, where: str) -> list[str]:
    """Keys holding inf or nan anywhere in a TOML document (free-form tables included)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where} = {value}"]
    if isinstance(value, dict):
        return [bad for k, v in value.items() for bad in _non_finite(v, f"{where}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [bad for i, v in enumerate(value) for bad in _non_finite(v, f"{where}[{i}]")]
    return []


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Merge tables key by key, so an <env>.toml overrides single keys of service.toml."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


class ResolvedFunction(BaseModel):
    """A function as it must exist in one environment: name, handler, settings, env."""

    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    spec: FunctionSpec
    env: dict[str, SecretStr]

    def env_plain(self) -> dict[str, str]:
        """The environment variables with their real values (only for the boundary call)."""
        return {k: v.get_secret_value() for k, v in self.env.items()}


class DeployConfig(BaseModel):
    """The validated configuration for one environment, secrets resolved."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    service: ServiceSpec
    environment: EnvironmentSpec
    functions: dict[str, ResolvedFunction]
    tables: tuple[TableContract, ...]
    smoke: tuple[SmokeCase, ...]
    db_password: SecretStr | None = None

    @property
    def build_context(self) -> Path:
        """The service's build context as an absolute path."""
        return (self.root / self.service.build.context).resolve()

    @property
    def migrations_dir(self) -> Path | None:
        """The alembic script location as an absolute path (None: the service has none)."""
        if self.service.migrations is None:
            return None
        return (self.root / self.service.migrations).resolve()

    @property
    def database(self) -> DatabaseSpec:
        """The environment's database; ConfigError for a service that declares none."""
        if self.environment.database is None:
            raise ConfigError(
                f"environment {self.environment.name!r} declares no database",
                expected="[environment.database] for a step that reads or writes MySQL",
                found="none declared",
                remedy="declare [environment.database], or drop what needs it (migrations, "
                "tables, row ground truth)",
            )
        return self.environment.database

    @property
    def has_ground_truth(self) -> bool:
        """True when some smoke case proves a row or an object in storage."""
        return any(c.ground_truth is not None for c in self.smoke)

    @property
    def image_repository(self) -> str:
        """The image repository including the registry host, e.g. 127.0.0.1:5000/daily-report."""
        return f"{self.environment.registry}/{self.service.build.repository}"

    def database_url(self) -> str:
        """SQLAlchemy URL with the password; only for the driver, never for output."""
        db = self.database
        from urllib.parse import quote_plus

        assert self.db_password is not None  # set whenever a database is declared
        return (
            f"mysql+pymysql://{db.user}:{quote_plus(self.db_password.get_secret_value())}"
            f"@{db.host}:{db.port}/{db.name}"
        )

    def secret_values(self) -> list[str]:
        """Every secret value in play, for scrubbing outputs (longest first)."""
        values = {self.db_password.get_secret_value()} if self.db_password else set()
        for fn in self.functions.values():
            values.update(v.get_secret_value() for k, v in fn.env.items() if _is_secret_key(k, fn))
        # issue 14 (wt-copy): the registry password is read when used; scrub it all the same.
        auth = self.environment.registry_auth
        if auth and os.environ.get(auth.password_env):
            values.add(os.environ[auth.password_env])
        return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def _is_secret_key(key: str, fn: ResolvedFunction) -> bool:
    raw = {**fn.spec.env}
    return bool(SECRET_REF.search(raw.get(key, ""))) or any(
        word in key.upper() for word in ("PASSWORD", "SECRET", "TOKEN", "KEY")
    )


def secret_lookup(home: Path | None = None) -> dict[str, str]:
    """Values for ``${VAR}`` references: the stack env file, overridden by the process env."""
    values: dict[str, str] = {}
    env_file = (home or gangway_home()) / "stack.env"
    if env_file.exists():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


def apply_env_file(home: Path | None = None) -> Path | None:
    """Load <home>/stack.env into os.environ without overriding what is already set."""
    env_file = (home or gangway_home()) / "stack.env"
    if not env_file.exists():
        return None
    for key, value in dotenv_values(env_file).items():
        if value is not None:
            os.environ.setdefault(key, value)
    return env_file


def gangway_home() -> Path:
    """Where gangway keeps state (logs, ledger, rehearsal secrets): $GANGWAY_HOME or ./.gangway."""
    return Path(os.environ.get("GANGWAY_HOME", REPO_ROOT / ".gangway")).resolve()


def project_root(explicit: str | Path | None = None) -> Path:
    """The service checkout gangway deploys: explicit (``--project``), else $GANGWAY_PROJECT,
    else the current directory when it holds deployments/service.toml, else this repository
    (the reference service). Everything relative in the configuration is relative to it."""
    chosen = explicit or os.environ.get("GANGWAY_PROJECT")
    if chosen:
        root = Path(chosen).expanduser().resolve()
        if not (root / "deployments" / "service.toml").is_file():
            raise ConfigError(
                f"{root} is not a gangway project",
                expected=f"{root / 'deployments' / 'service.toml'} describing the service",
                found="no such file" if root.is_dir() else "no such directory",
                remedy="point --project (or GANGWAY_PROJECT) at the service's checkout, or run "
                "`gangway init --project DIR` there first",
            )
        return root
    here = Path.cwd()
    if (here / "deployments" / "service.toml").is_file():
        return here.resolve()
    return REPO_ROOT


def deployments_dir(project: Path | None = None) -> Path:
    """Where service.toml and the <env>.toml files live: $GANGWAY_DEPLOYMENTS, else the
    project's deployments/."""
    if os.environ.get("GANGWAY_DEPLOYMENTS"):
        return Path(os.environ["GANGWAY_DEPLOYMENTS"]).resolve()
    return (project or project_root()) / "deployments"


def available_environments(directory: Path | None = None) -> list[str]:
    """Environment names that have a TOML file beside service.toml."""
    directory = directory or deployments_dir()
    return sorted(p.stem for p in directory.glob("*.toml") if p.stem != "service")


def _resolve(value: str, lookup: dict[str, str], where: str) -> str:
    missing = [name for name in SECRET_REF.findall(value) if name not in lookup]
    if missing:
        raise ConfigError(
            f"{where} references unset variable(s) {', '.join(missing)}",
            expected=f"{', '.join(missing)} set in the environment",
            found="not set",
            remedy=f"export {missing[0]}=... (for the rehearsal stack: `make stack` writes "
            f"them to {gangway_home() / 'stack.env'})",
        )
    return SECRET_REF.sub(lambda m: lookup[m.group(1)], value)


def load_config(
    env: str,
    directory: Path | None = None,
    root: Path | None = None,
    project: str | Path | None = None,
) -> DeployConfig:
    """Read, merge and validate the configuration of one environment, or raise ConfigError.

    project: the service checkout (see project_root); root and directory default from it."""
    root = root or project_root(project)
    return _finish(read_settings(env, directory, root), env, root)


def read_settings(
    env: str, directory: Path | None = None, root: Path | None = None
) -> DeploySettings:
    """One environment's merged, validated settings as declared: ``${VAR}`` references are
    left unresolved (no secret is read), so a job without the secrets can still read what an
    environment declares (the PR gate's configuration contract). ConfigError when invalid."""
    root = root or project_root()
    directory = directory or deployments_dir(root)
    if not ENV_NAME.fullmatch(env):
        raise ConfigError(
            f"environment name {env!r} is not valid",
            expected="lowercase letters, digits and '-'",
            found=repr(env),
            remedy=f"use one of: {', '.join(available_environments(directory)) or '(none)'}",
        )
    service_file = directory / "service.toml"
    env_file = directory / f"{env}.toml"
    for path, what in ((service_file, "service description"), (env_file, f"environment {env!r}")):
        if not path.exists():
            raise ConfigError(
                f"no {what} file",
                expected=str(path),
                found="no such file",
                remedy="known environments: "
                + (", ".join(available_environments(directory)) or "(none)")
                if path is env_file
                else f"create {path} describing the service (see deployments/ in the gangway repo)",
            )
        document = read_toml(path)
        non_finite = _non_finite(document, "")
        if non_finite:
            raise ConfigError(
                f"{path.name} sets {', '.join(non_finite)}",
                expected="finite numbers only (inf and nan are not durations, rates or limits)",
                found=", ".join(non_finite),
                remedy=f"set a finite value in {path}",
            )

    settings_cls = type("_Settings", (DeploySettings,), {"toml_files": (service_file, env_file)})
    try:
        raw: DeploySettings = settings_cls()
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(
            f"configuration for {env!r} is invalid",
            expected=f"{service_file.name} + {env_file.name} matching gangway's schema",
            found=problems,
            remedy="fix the named keys (or the GANGWAY_* variable that overrides them)",
        ) from exc
    return terraform_owned(raw, root, env, (service_file, env_file))


def _problem(err: Any) -> str:
    """One validation error as ``key: message``, with a number/boolean input shown."""
    text = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    value = err.get("input")
    # Only non-text inputs are echoed: a text value may be a secret put in the wrong key.
    if isinstance(value, bool | int | float) and err.get("type") != "value_error":
        text += f" (found {value!r})"
    return text


def _function_name(key: str, name: str, explicit: bool, region: str) -> str:
    """The function's name, checked locally against AWS's rules before any call carries it."""
    arn = FUNCTION_ARN.fullmatch(name)
    if FUNCTION_NAME.fullmatch(name) or (arn and arn["region"] == region):
        return name
    if arn:
        problem = f"an ARN in region {arn['region']}, not the environment's {region}"
    elif not name:
        problem = "empty"
    elif len(name) > 64:
        problem = f"{len(name)} characters"
    else:
        problem = "characters other than A-Z a-z 0-9 - _"
    raise ConfigError(
        f"functions.{key}.name {name!r} is not a valid Lambda function name ({problem})",
        expected="1-64 characters of A-Za-z0-9-_, or a full function ARN "
        f"(arn:aws:lambda:{region}:ACCOUNT:function:NAME)",
        found=f"{name!r} ({problem})",
        remedy=f"fix functions.{key}.name"
        if explicit
        else f"the default name is <service.name>-<env>-<key>: set functions.{key}.name to a "
        "name of at most 64 characters, or shorten service.name or the function's key",
    )


MAX_EVENT_BYTES = 256 * 1024  # Lambda's limit for an asynchronous invoke's payload
_JSON_KINDS: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _with_event_file(case: SmokeCase, root: Path) -> SmokeCase:
    """The case with its event_file read into ``event`` (a JSON object), or ConfigError."""
    if case.event_file is None:
        return case
    where = f"smoke case {case.name!r}: event_file {case.event_file!r}"
    if "event" in case.model_fields_set:
        raise ConfigError(
            f"smoke case {case.name!r} sets both event and event_file",
            expected="one of event (inline TOML) or event_file (a JSON file)",
            found=f"event and event_file = {case.event_file!r}",
            remedy="remove one of the two from the case",
        )
    path = (root / case.event_file).resolve()
    base = root.resolve()
    setting = f"smoke.event_file of {case.name!r} (relative to the project root {base})"
    if not path.is_relative_to(base):
        raise ConfigError(
            f"{where} is outside the project",
            expected=f"a JSON file inside {base}",
            found=str(path),
            remedy=f"point {setting} at a file inside the project",
        )
    if not path.is_file():
        raise ConfigError(
            f"{where} does not exist",
            expected=f"a JSON file at {path}",
            found="no such file",
            remedy=f"create {path}, or fix {setting}",
        )
    refuse_large(
        path, MAX_EVENT_BYTES, f"for an invoke payload ({where})", "256 KiB",
        f"trim the event in {path.name}, or point {setting} at a smaller one",
    )

    def not_json(constant: str) -> Any:
        # NaN/Infinity are Python's extension, not JSON: no other consumer would read them.
        raise ValueError(f"{constant} is not JSON")

    try:
        event = json.loads(path.read_bytes(), parse_constant=not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{where} is not valid JSON",
            expected="a JSON object (RFC 8259, UTF-8)",
            found=f"{exc} in {path}",
            remedy=f"fix the JSON in {path}, or point {setting} at another file",
        ) from exc
    if not isinstance(event, dict):
        raise ConfigError(
            f"{where} does not hold a JSON object",
            expected="a JSON object ({...}) as the event",
            found=f"a JSON {_JSON_KINDS.get(type(event), 'value')} in {path}",
            remedy=f"make {path.name} one JSON object, or point {setting} at another file",
        )
    return case.model_copy(update={"event": event})


def _finish(raw: DeploySettings, env: str, root: Path) -> DeployConfig:
    if raw.environment.name != env:
        raise ConfigError(
            f"{env}.toml declares environment.name = {raw.environment.name!r}",
            expected=repr(env),
            found=repr(raw.environment.name),
            remedy=f"set environment.name = {env!r} in {env}.toml",
        )
    raw = raw.model_copy(update={"smoke": tuple(_with_event_file(c, root) for c in raw.smoke)})
    lookup = secret_lookup()
    functions: dict[str, ResolvedFunction] = {}
    for key, spec in raw.functions.items():
        merged = {**raw.function_env, **spec.env}
        resolved = {
            k: SecretStr(_resolve(v, lookup, f"functions.{key}.env.{k}")) for k, v in merged.items()
        }
        name = _function_name(
            key,
            spec.name
            if spec.name is not None
            else f"{raw.service.name}-{env}-{key.replace('_', '-')}",
            explicit=spec.name is not None,
            region=raw.environment.aws.region,
        )
        functions[key] = ResolvedFunction(
            key=key, name=name, spec=spec.model_copy(update={"env": merged}), env=resolved
        )

    for table in raw.tables:
        unknown = [w for w in table.writers if w not in functions]
        if unknown:
            raise ConfigError(
                f"table {table.name!r} names writers that are not functions: {', '.join(unknown)}",
                expected=f"one of {', '.join(functions)}",
                found=", ".join(unknown),
                remedy="fix tables.writers in service.toml",
            )
    for case in raw.smoke:
        if case.function not in functions:
            raise ConfigError(
                f"smoke case {case.name!r} targets unknown function {case.function!r}",
                expected=f"one of {', '.join(functions)}",
                found=case.function,
                remedy=f"fix smoke.function in {env}.toml",
            )
    earlier: set[str] = set()
    for case in raw.smoke:
        unknown = [name for name in case.after if name not in earlier]
        if unknown:
            # Only earlier cases: the declared order stays a valid run order (no cycles).
            raise ConfigError(
                f"smoke case {case.name!r} runs after cases that are not declared before it",
                expected="smoke.after names cases declared earlier in the file",
                found=", ".join(unknown),
                remedy=f"fix smoke.after of {case.name!r} or move the case it names above it",
            )
        earlier.add(case.name)

    _declared_storage(raw, root, env)
    password: SecretStr | None = None
    if raw.environment.database is not None:
        pw_var = raw.environment.database.password_env
        if pw_var not in lookup:
            raise ConfigError(
                f"the database password variable {pw_var} is not set",
                expected=f"{pw_var} in the environment",
                found="not set",
                remedy=f"export {pw_var}=... (for the rehearsal stack run `make stack`, which "
                f"writes it to {gangway_home() / 'stack.env'})",
            )
        password = SecretStr(lookup[pw_var])
    return DeployConfig(
        root=root,
        service=raw.service,
        environment=raw.environment,
        functions=functions,
        tables=raw.tables,
        smoke=raw.smoke,
        db_password=password,
    )


def _declared_storage(raw: DeploySettings, root: Path, env: str) -> None:
    """What needs a database or a bucket is declared with one; a declared migrations folder
    exists. Nothing is assumed: a missing piece is named here, before any side effect."""
    migrations = raw.service.migrations
    if migrations is not None:
        folder = (root / migrations).resolve()
        if not (folder / "env.py").is_file() or not (folder / "versions").is_dir():
            raise ConfigError(
                f"service.migrations = {str(migrations)!r} is not an alembic folder",
                expected=f"{folder} with env.py and versions/",
                found="no such folder" if not folder.exists() else "no env.py or versions/ in it",
                remedy="fix service.migrations (relative to the project "
                f"{root}), or remove it if the service has no migrations",
            )
    needs_db = []
    if migrations is not None:
        needs_db.append("service.migrations")
    if raw.tables:
        needs_db.append("[[tables]]")
    needs_db += [
        f"smoke case {c.name!r} ground_truth.row"
        for c in raw.smoke
        if c.ground_truth is not None and c.ground_truth.row is not None
    ]
    if needs_db and raw.environment.database is None:
        raise ConfigError(
            f"{', '.join(needs_db)} need a database, and {env}.toml declares none",
            expected="[environment.database] (host, name, user, password_env)",
            found="no [environment.database]",
            remedy=f"declare [environment.database] in {env}.toml, or remove "
            f"{needs_db[0]} if the service keeps no data in MySQL",
        )
    if raw.environment.bucket is None:
        bucketless = [
            c.name
            for c in raw.smoke
            if c.ground_truth is not None
            and c.ground_truth.object is not None
            and c.ground_truth.object.bucket is None
        ]
        if bucketless:
            raise ConfigError(
                f"smoke case {bucketless[0]!r} checks an object in the environment's bucket, "
                f"and {env}.toml declares none",
                expected="environment.bucket, or ground_truth.object.bucket on the case",
                found="no bucket",
                remedy=f"set environment.bucket in {env}.toml, or name the bucket on the case",
            )


# --- issue 15: a terraform/ folder is the one declared source of the fields Terraform owns ----
# (timeout, memory, architecture, env values). The TOML files then declare only what the code
# needs; a field declared in both is refused naming both places. GANGWAY_* variables still
# override (an operator's one-off, not a second declaration).
def _toml_declares(path: Path) -> list[str]:
    document = tomllib.loads(path.read_text())
    found = [f"[function_env] in {path.name}"] if "function_env" in document else []
    for key, spec in (document.get("functions") or {}).items():
        for name in ("timeout", "memory", "architecture", "env"):
            if isinstance(spec, dict) and name in spec:
                found.append(f"functions.{key}.{name} in {path.name}")
    return found


def terraform_owned(
    raw: DeploySettings, root: Path, env: str, files: tuple[Path, ...]
) -> DeploySettings:
    """raw with timeout, memory, architecture and env taken from root's terraform/ folder
    (unchanged without one); ConfigError when a TOML file declares them as well."""
    from gangway import terraform

    declaration = terraform.read(root, env)
    if declaration is None:
        return raw
    twice = [item for path in files for item in _toml_declares(path)]
    if twice:
        raise ConfigError(
            "a field Terraform owns is also declared in gangway's configuration",
            expected=f"timeout, memory, architecture and env values only in {terraform.FOLDER}/ "
            "(this service has one), handlers and required_env in deployments/",
            found="; ".join(twice) + f"; and in {declaration.folder}",
            remedy="remove them from deployments/ (Terraform declares them), or change them "
            f"in {terraform.FOLDER}/ if the design changed",
        )
    functions: dict[str, FunctionSpec] = {}
    for key, spec in raw.functions.items():
        declared = declaration.functions.get(key)
        if declared is None:
            # A name AWS would refuse is the more basic error: say that one first.
            _function_name(
                key,
                spec.name or f"{raw.service.name}-{env}-{key.replace('_', '-')}",
                explicit=spec.name is not None,
                region=raw.environment.aws.region,
            )
            raise ConfigError(
                f"function {key} is not declared in {terraform.FOLDER}/",
                expected=f'resource "{terraform.LAMBDA}" "{key}" in {declaration.folder}',
                found=f"none (declared: {', '.join(declaration.functions) or 'no function'})",
                remedy=f"declare it in {terraform.FOLDER}/ (its label is the function's key in "
                "service.toml), or fix the key",
            )
        overridden = spec.model_fields_set  # only GANGWAY_* overrides can set these now
        update: dict[str, Any] = {"env": dict(declared.env)}
        for field, value in (
            ("timeout", declared.timeout),
            ("memory", declared.memory),
            ("architecture", declared.architecture),
        ):
            if field not in overridden:
                update[field] = value
        try:
            functions[key] = FunctionSpec.model_validate({**spec.model_dump(), **update})
        except ValidationError as exc:
            raise ConfigError(
                f"{terraform.FOLDER}/ declares function {key} with values gangway refuses",
                expected="timeout 1-900 s, memory 128-10240 MB, architecture x86_64 or arm64",
                found="; ".join(_problem(err) for err in exc.errors()),
                remedy=f"fix {declaration.where(key)}",
            ) from exc
    return raw.model_copy(update={"functions": functions, "function_env": {}})
