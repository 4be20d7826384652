"""The nightly drift check: what the code needs vs what is declared vs what runs vs the ledger.

For every environment and function: the env keys the handler requires, Terraform's declared
(or deployments/'s, for a service without terraform/) env, timeout, memory, architecture and
package type against the live function; the alias → version → image against the ledger's last
settled deploy, promotion or rollback (a hand deploy is drift, a recorded promotion is not,
an open record with moved traffic is a stranded deploy); the live schema against the table
contract and the recorded revision's DDL, and that revision against the migrations' head.
Every difference names its owner and remedy (tasks/drift_compare.py); drift-ignore.toml
accepts some, with reasons.

Scale: functions are read in batches, one Prefect task run per batch (mapped), each batch by a
bounded thread pool; the number of task runs stays around (functions / batch) + one schema
read per environment, however many functions. The task runner is a setting:
GANGWAY_DRIFT_RUNNER=threads (default, GANGWAY_DRIFT_WORKERS batches at once) or dask
(prefect-dask; GANGWAY_DRIFT_DASK_ADDRESS names a running scheduler, else a LocalCluster).

Read-only: no lock, nothing written but the Prefect artifacts. The flow run ends Failed when
there is drift or an environment could not be checked, Completed otherwise.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from gangway.config import DeployConfig, available_environments, deployments_dir, load_config
from gangway.config import project_root as resolve_project
from gangway.errors import ConfigError, GangwayError
from gangway.evidence import Check
from gangway.redact import scrub

# Imported for its log filter too: a gangway error (DriftFound) is logged without a traceback.
from tasks import drift_ignore, prefect_task  # noqa: F401
from tasks.drift_compare import (
    LiveLambda,
    SchemaReading,
    configuration_drift,
    routing_drift,
    schema_drift,
)
from tasks.drift_declared import Declared, declared
from tasks.drift_lambda import THREADS, Latest, list_latest, read_batch
from tasks.drift_ledger import expected_routing, stranded_moves
from tasks.drift_schema import read_schema
from tasks.ledger import Ledger

ALL = "all"
RUNNER_SETTING = "GANGWAY_DRIFT_RUNNER"
WORKERS_SETTING = "GANGWAY_DRIFT_WORKERS"
DASK_ADDRESS_SETTING = "GANGWAY_DRIFT_DASK_ADDRESS"
BATCH_SETTING = "GANGWAY_DRIFT_BATCH"
THREADS_SETTING = "GANGWAY_DRIFT_THREADS"
DEFAULT_WORKERS = 4  # batches read at once; each batch runs tasks/drift_lambda.THREADS requests
DEFAULT_BATCH = 50
MAX_BATCHES_PER_ENV = 20  # beyond this the batches grow instead: a bounded number of task runs
LEDGER_DEPTH = 200
EXIT_CLEAN, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_UNCHECKED = 0, 1, 2, 3


def _int_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(
            f"{name} is not a positive whole number",
            expected="e.g. 4",
            found=repr(raw),
            remedy=f"set {name} to a number ≥ 1, or unset it",
        )
    return int(raw)


def task_runner() -> Any:
    """The task runner the settings name: threads (default) or dask (prefect-dask)."""
    kind = os.environ.get(RUNNER_SETTING, "threads") or "threads"
    workers = _int_setting(WORKERS_SETTING, DEFAULT_WORKERS)
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        address = os.environ.get(DASK_ADDRESS_SETTING)
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
        )
    raise ConfigError(
        f"{RUNNER_SETTING}={kind!r} is not a task runner gangway knows",
        expected="threads or dask",
        found=repr(kind),
        remedy=f"set {RUNNER_SETTING} to threads or dask, or unset it",
    )


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvDrift:
    """One environment's comparison, or why it could not be checked (error, boundary)."""

    env: str
    service: str
    checks: tuple[Check, ...] = ()
    functions: int = 0
    error: str | None = None
    boundary: str | None = None
    seconds: float = 0.0

    @property
    def drift(self) -> tuple[Check, ...]:
        """The differences nobody accepted."""
        return tuple(c for c in self.checks if not c.ok)

    @property
    def ignored(self) -> tuple[Check, ...]:
        """The differences the ignore file accepted, with their reasons."""
        return tuple(c for c in self.checks if c.ok and "ignored" in c.evidence)

    @property
    def exit_code(self) -> int:
        """3 could not check, 1 drift, 0 clean."""
        if self.error:
            return EXIT_UNCHECKED
        return EXIT_DRIFT if self.drift else EXIT_CLEAN

    @property
    def status(self) -> str:
        """clean, drift or unchecked."""
        return {EXIT_CLEAN: "clean", EXIT_DRIFT: "drift", EXIT_UNCHECKED: "unchecked"}[
            self.exit_code
        ]


@dataclass(frozen=True)
class DriftReport:
    """Every environment checked in one run."""

    envs: tuple[EnvDrift, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    task_runs: int = 0

    @property
    def exit_code(self) -> int:
        """The most severe: an environment not checked (3) > drift (1) > clean (0)."""
        codes = {e.exit_code for e in self.envs}
        for code in (EXIT_UNCHECKED, EXIT_DRIFT):
            if code in codes:
                return code
        return EXIT_CLEAN

    def summary(self) -> str:
        """One line per environment."""
        return "; ".join(
            f"{e.env}: {e.status}"
            + (f" ({len(e.drift)} differences)" if e.drift else "")
            + (f" ({e.boundary})" if e.error else "")
            for e in self.envs
        )


class DriftFound(GangwayError):
    """Drift found or an environment not checked: fails the flow run, carries the report."""

    boundary = "drift"

    def __init__(self, report: DriftReport) -> None:
        self.report = report
        super().__init__(
            f"drift check: {report.summary()}",
            expected="every environment checked and as declared",
            found=f"{sum(len(e.drift) for e in report.envs)} differences, "
            f"{sum(1 for e in report.envs if e.error)} environments not checked",
            remedy="see the drift table artifact: each row names its owner and remedy",
        )


# --- tasks (a listing and a schema read per environment, one per batch of functions) ---


@dataclass(frozen=True)
class Reading:
    """What one task read, or the error that stopped it (never raised across the runner)."""

    env: str
    found: dict[str, LiveLambda | None] | None = None
    latest: dict[str, Latest] | None = None
    schema: SchemaReading | None = None
    error: str | None = None
    boundary: str | None = None


@task(name="drift · list functions", task_run_name="list functions {label}", cache_policy=NO_CACHE)
def list_functions(
    config: DeployConfig,
    hash_key: bytes,
    plain: dict[str, frozenset[str]],
    label: str,
) -> Reading:
    """Every configured function's $LATEST configuration in one environment (paginated)."""
    env = config.environment.name
    names = {key: fn.name for key, fn in config.functions.items()}
    try:
        return Reading(env=env, latest=list_latest(config, names, hash_key, plain))
    except GangwayError as exc:
        return Reading(env=env, error=exc.render(), boundary=exc.boundary)


@task(name="drift · read functions", task_run_name="read functions {label}", cache_policy=NO_CACHE)
def read_functions(
    config: DeployConfig, batch: list[str], latest: dict[str, Latest], label: str
) -> Reading:
    """One batch of functions of one environment: aliases and routed images, concurrently."""
    env = config.environment.name
    try:
        threads = _int_setting(THREADS_SETTING, THREADS)
        return Reading(env=env, found=read_batch(config, batch, latest, threads))
    except GangwayError as exc:
        return Reading(env=env, error=exc.render(), boundary=exc.boundary)


@task(name="drift · read schema", task_run_name="read schema {label}", cache_policy=NO_CACHE)
def read_database(config: DeployConfig, label: str) -> Reading:
    """One environment's schema (nothing to read without a database)."""
    env = config.environment.name
    try:
        return Reading(env=env, schema=read_schema(config))
    except GangwayError as exc:
        return Reading(env=env, error=exc.render(), boundary=exc.boundary)


def batches(keys: Sequence[str], size: int) -> list[list[str]]:
    """keys cut into at most MAX_BATCHES_PER_ENV batches of at least size each."""
    if not keys:
        return []
    size = max(size, math.ceil(len(keys) / MAX_BATCHES_PER_ENV))
    return [list(keys[i : i + size]) for i in range(0, len(keys), size)]


def _result(future: Any, env: str) -> Reading:
    try:
        return future.result()
    except Exception as exc:  # a crashed task run (a Dask worker lost...): not checked
        return Reading(
            env=env, error=f"{type(exc).__name__}: {str(exc)[:300]}", boundary="orchestration"
        )


def check_environments(
    configs: Sequence[DeployConfig], ledger: Ledger, batch_size: int | None = None
) -> DriftReport:
    """Read every environment (fanned out as task runs) and compare; inside a flow run.

    Task runs: one listing and one schema read per environment, then about one per batch of
    functions: a bounded number, however many functions."""
    started = time.monotonic()
    hash_key = secrets.token_bytes(32)
    size = batch_size or _int_setting(BATCH_SETTING, DEFAULT_BATCH)
    rules = {c.root: drift_ignore.load_rules(c.root) for c in configs}
    prepared = {c.environment.name: declared(c, hash_key) for c in configs}
    names = [c.environment.name for c in configs]
    # The schema reads run while Lambda is listed and read.
    schema_futures = read_database.map(list(configs), names)
    listing_futures = list_functions.map(
        list(configs), unmapped(hash_key), [prepared[n].plain for n in names], names
    )
    listings = [_result(f, n) for f, n in zip(listing_futures, names, strict=True)]
    listed_s = time.monotonic() - started
    plan: list[tuple[DeployConfig, list[str], dict[str, Latest], str]] = []
    for config, listing in zip(configs, listings, strict=True):
        if listing.error:
            continue
        env, latest = config.environment.name, listing.latest or {}
        cut = batches(list(config.functions), size)
        plan += [
            (
                config,
                batch,
                {k: latest[k] for k in batch if k in latest},
                f"{env} {i + 1}/{len(cut)}",
            )
            for i, batch in enumerate(cut)
        ]
    function_futures = read_functions.map(
        [p[0] for p in plan], [p[1] for p in plan], [p[2] for p in plan], [p[3] for p in plan]
    )
    readings = [
        _result(f, p[0].environment.name) for f, p in zip(function_futures, plan, strict=True)
    ]
    schemas = [_result(f, n) for f, n in zip(schema_futures, names, strict=True)]
    read_s = time.monotonic() - started
    envs = []
    for config, listing, schema_reading in zip(configs, listings, schemas, strict=True):
        env = config.environment.name
        mine = [listing, *(r for r in readings if r.env == env), schema_reading]
        envs.append(_compare(config, prepared[env], mine, ledger, rules[config.root], started))
    report = DriftReport(
        envs=tuple(envs),
        seconds=time.monotonic() - started,
        task_runs=len(plan) + 2 * len(configs),
    )
    get_run_logger().info(
        "drift: listed in %.1f s, read in %.1f s, compared in %.1f s (%d task runs)",
        listed_s,
        read_s - listed_s,
        report.seconds - read_s,
        report.task_runs,
    )
    return report


def _compare(
    config: DeployConfig,
    decl: Declared,
    readings: list[Reading],
    ledger: Ledger,
    rules: Sequence[drift_ignore.IgnoreRule],
    started: float,
) -> EnvDrift:
    env, service = config.environment.name, config.service.name
    failed = next((r for r in readings if r.error), None)
    if failed is not None:
        return EnvDrift(
            env=env,
            service=service,
            functions=len(config.functions),
            error=scrub(failed.error, config.secret_values()),
            boundary=failed.boundary,
            seconds=time.monotonic() - started,
        )
    try:
        records = ledger.recent(env, limit=LEDGER_DEPTH, service=service)
        running = ledger.running(env, service)
    except GangwayError as exc:
        return EnvDrift(
            env=env,
            service=service,
            functions=len(config.functions),
            error=exc.render(),
            boundary=exc.boundary,
        )
    live: dict[str, LiveLambda | None] = {}
    for reading in readings:
        live.update(reading.found or {})
    schema_reading = next((r.schema for r in readings if r.schema is not None), None)
    checks = configuration_drift(env, decl.functions, live, decl.owner, decl.source)
    checks += routing_drift(
        env, live, expected_routing(config.functions, records), stranded_moves(running)
    )
    if schema_reading is not None:
        checks += schema_drift(env, schema_reading)
    kept = drift_ignore.apply(scrub(checks, config.secret_values()), rules)
    return EnvDrift(
        env=env,
        service=service,
        checks=kept,
        functions=len(config.functions),
        seconds=time.monotonic() - started,
    )


# --- reporting ------------------------------------------------------------------------------


def rows(report: DriftReport) -> list[dict[str, str]]:
    """One row per difference (and per environment not checked), for tables and JSON."""
    out = []
    for e in report.envs:
        if e.error:
            out.append(
                {
                    "env": e.env,
                    "owner": "-",
                    "kind": "could not check",
                    "subject": e.boundary or "",
                    "expected": "the environment readable",
                    "found": e.error.splitlines()[0],
                    "remedy": "see the error",
                }
            )
        for c in e.drift:
            out.append(
                {
                    "env": e.env,
                    "owner": c.evidence.get("owner", ""),
                    "kind": c.evidence.get("kind", ""),
                    "subject": c.evidence.get("subject", ""),
                    "expected": c.expected,
                    "found": c.found,
                    "remedy": c.remedy,
                }
            )
    return out


def markdown(report: DriftReport) -> str:
    """The run's summary: per environment its status, then differences by owner."""
    lines = [
        "# Drift",
        "",
        "| env | status | functions | differences | ignored |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {e.env} | {e.status} | {e.functions} | {len(e.drift)} | {len(e.ignored)} |"
        for e in report.envs
    ]
    for e in report.envs:
        if e.error:
            lines += ["", f"## {e.env}: could not check ({e.boundary})", "", "```", e.error, "```"]
        owners = sorted({c.evidence.get("owner", "") for c in e.drift})
        for owner in owners:
            lines += ["", f"## {e.env} · owner: {owner}", ""]
            lines += [
                f"- **{c.evidence.get('kind')}** {c.evidence.get('subject')}: expected "
                f"{c.expected}; found {c.found}. *Remedy:* {c.remedy}"
                for c in e.drift
                if c.evidence.get("owner") == owner
            ]
    return "\n".join(lines)


def _artifacts(report: DriftReport) -> None:
    key = "drift-" + "-".join(e.env for e in report.envs)
    create_table_artifact(
        key=key,
        table=rows(report) or [{"env": "all", "kind": "no drift"}],
        description=report.summary(),
    )
    create_markdown_artifact(
        key=f"{key}-summary", markdown=markdown(report), description=report.summary()
    )


def configs_for(env: str, project: str | None = None) -> list[DeployConfig]:
    """The configuration of env, or of every environment for 'all' (ConfigError: bad input)."""
    root = resolve_project(project)
    known = available_environments(deployments_dir(root))
    if env != ALL and env not in known:
        raise ConfigError(
            f"no environment {env!r} in this project",
            expected=f"one of: {', '.join(known) or '(none)'}, or {ALL}",
            found=repr(env),
            remedy="pass an environment with a <env>.toml",
        )
    return [load_config(e, project=root) for e in (known if env == ALL else [env])]


@flow(name="drift", flow_run_name="{env} · drift", task_runner=task_runner())
def drift(env: str = ALL, project: str | None = None) -> DriftReport:
    """Compare every function of env (or all) with its declaration and the ledger; Failed
    when there is drift or an environment could not be checked."""
    began = time.monotonic()
    configs = configs_for(env, project)
    get_run_logger().info(
        "drift: %d configurations read in %.1f s", len(configs), time.monotonic() - began
    )
    ledger = Ledger()
    try:
        report = check_environments(configs, ledger)
    finally:
        ledger.engine.dispose()
    _artifacts(report)
    if report.exit_code != EXIT_CLEAN:
        raise DriftFound(report)
    return report
