"""The nightly drift check at scale (issue 15): N functions in each of 3 environments on the
rehearsal stack, a known set of drifts of every kind injected, then the drift flow and a plain
sequential loop doing the same reads, both through the fault proxy adding ~50 ms per AWS
request (real AWS calls are network-bound; moto on loopback would hide what concurrency buys).

Prints the wall times, their ratio, peak memory, the injected drifts found and the false
positives; last line:
RESULT {"functions": …, "drift_s": …, "sequential_s": …, "ratio": …, "injected": …,
"found": …, "false_positives": …, "peak_mib": …, "task_runs": …}
Targets: 1,500 functions in ≤ 30 s and ≤ 0.25 of the sequential loop; every drift found; no
false positives. Run with `make bench` or `.venv/bin/python bench/drift.py [--functions N]`
(the stack must be up; on a shared machine under `flock /tmp/stack.lock`). Everything it makes
is named drift-bench-*, and its functions are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gangway.config import REPO_ROOT, DeployConfig, apply_env_file, load_config
from gangway.record import DeployRecord, FunctionMove, Outcome

SERVICE = "drift-bench"
ENVS = ("bench-a", "bench-b", "bench-c")
LATENCY_S = 0.05
Found = set[tuple[str, str, str]]  # (env, function key or subject, kind)


# --- the project: N functions, declared in terraform/ -----------------------------------------


def _key(i: int) -> str:
    return f"f{i:04d}"


def make_project(base: Path, n: int) -> Path:
    """deployments/ (handlers, required keys), terraform/ (N functions), migrations/."""
    root = base / SERVICE
    (root / "deployments").mkdir(parents=True)
    (root / "terraform" / "environments").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "migrations", root / "migrations")
    functions = "".join(
        f'[functions.{_key(i)}]\nhandler = "app.handler"\nrequired_env = ["TZ", "DB_PASSWORD"]\n\n'
        for i in range(n)
    )
    (root / "deployments" / "service.toml").write_text(
        f'[service]\nname = "{SERVICE}"\nmigrations = "migrations"\n\n'
        f'[service.build]\ncontext = "src"\nrepository = "{SERVICE}"\n\n{functions}'
        '[[tables]]\nname = "precomputed_reports"\nwriters = ["f0000"]\n\n[tables.columns]\n'
        'symbol = { type = "varchar", nullable = false }\n'
        'report_json = { type = "json", nullable = false }\n'
        'pdf_s3_key = { type = "varchar", nullable = true }\n'
    )
    for env in ENVS:
        db = f"drift_{env.replace('-', '_')}"
        (root / "deployments" / f"{env}.toml").write_text(
            f'[environment]\nname = "{env}"\nregistry = "127.0.0.1:5000"\n\n'
            '[environment.aws]\nregion = "ap-southeast-1"\nendpoint_url = "http://127.0.0.1:4566"\n\n'
            f'[environment.database]\nhost = "127.0.0.1"\nport = 3306\nname = "{db}"\n'
            f'user = "{db}"\npassword_env = "GANGWAY_{env.upper().replace("-", "_")}_DB_PASSWORD"\n'
        )
        (root / "terraform" / "environments" / f"{env}.tfvars").write_text(
            f'env   = "{env}"\nlevel = "info"\n'
        )
    (root / "terraform" / "variables.tf").write_text(
        'variable "env" {\n  type = string\n}\n\nvariable "level" {\n  type = string\n}\n\n'
        'variable "db_password" {\n  type      = string\n  sensitive = true\n}\n'
    )
    (root / "terraform" / "main.tf").write_text(
        "\n".join(
            f'resource "aws_lambda_function" "{_key(i)}" {{\n'
            f'  function_name = "{SERVICE}-${{var.env}}-{_key(i)}"\n  package_type  = "Image"\n'
            f'  timeout       = 30\n  memory_size   = 256\n  architectures = ["x86_64"]\n\n'
            '  environment {\n    variables = {\n      TZ          = "UTC"\n'
            "      LEVEL       = var.level\n      DB_PASSWORD = var.db_password\n    }\n  }\n}\n"
            for i in range(n)
        )
    )
    return root


# --- the world: functions, aliases, ledger, schema --------------------------------------------


def _parallel(work: Callable[[Any], Any], items: Iterable[Any], threads: int = 16) -> list[Any]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, items))


def _lam(config: DeployConfig) -> Any:
    import boto3
    from botocore.config import Config

    aws = config.environment.aws
    return boto3.client(
        "lambda",
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 5}, max_pool_connections=32
        ),
    )


def delete_functions(config: DeployConfig) -> int:
    """Delete every drift-bench function of config's environment (a previous run's too)."""
    lam = _lam(config)
    prefix = f"{SERVICE}-{config.environment.name}-"
    names = [
        f["FunctionName"]
        for page in lam.get_paginator("list_functions").paginate()
        for f in page["Functions"]
        if f["FunctionName"].startswith(prefix)
    ]
    _parallel(lambda name: lam.delete_function(FunctionName=name), names)
    return len(names)


def _role(config: DeployConfig) -> str:
    import boto3

    aws = config.environment.aws
    iam = boto3.client("iam", region_name=aws.region, endpoint_url=aws.endpoint_url)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "lambda.amazonaws.com"},
            }
        ],
    }
    try:
        return str(iam.get_role(RoleName=SERVICE)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        return str(
            iam.create_role(RoleName=SERVICE, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
                "Arn"
            ]
        )


def create_functions(config: DeployConfig, image: str) -> dict[str, str]:
    """Each function as Terraform declares it, a version published, the alias on it; returns
    each function's version (moto numbers on after a function of the same name was deleted)."""
    lam = _lam(config)
    role = _role(config)

    def one(fn: Any) -> str:
        lam.create_function(
            FunctionName=fn.name,
            PackageType="Image",
            Code={"ImageUri": image},
            Role=role,
            Timeout=fn.spec.timeout,
            MemorySize=fn.spec.memory,
            Architectures=[fn.spec.architecture],
            Environment={"Variables": fn.env_plain()},
            Publish=False,
        )
        version = lam.publish_version(FunctionName=fn.name)["Version"]
        lam.create_alias(
            FunctionName=fn.name, Name=config.environment.alias, FunctionVersion=version
        )
        return str(version)

    return dict(zip(config.functions, _parallel(one, config.functions.values()), strict=True))


def record(
    ledger_url: str,
    config: DeployConfig,
    versions: dict[str, str],
    image: str,
    digest: str,
    outcome: Outcome = Outcome.SUCCEEDED,
) -> None:
    """A ledger record as a deploy writes it."""
    from tasks.ledger import Ledger

    moves = {
        k: FunctionMove(
            name=config.functions[k].name,
            version_before=None,
            version_after=v,
            image_after=image,
            alias_moved=True,
        )
        for k, v in versions.items()
    }
    ledger = Ledger(ledger_url)
    try:
        ledger.write(
            DeployRecord(
                kind="deploy",
                service=SERVICE,
                env=config.environment.name,
                commit_sha=secrets.token_hex(20),
                image_ref=image,
                image_digest=digest,
                outcome=outcome,
                functions=moves,
                finished_at=None if outcome is Outcome.RUNNING else datetime.now(UTC),
            )
        )
    finally:
        ledger.engine.dispose()


def _update(lam: Any, name: str, **changes: Any) -> None:
    lam.update_function_configuration(FunctionName=name, **changes)
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


def _publish(lam: Any, name: str) -> str:
    _update(lam, name, Description=secrets.token_hex(4))
    return str(lam.publish_version(FunctionName=name)["Version"])


def inject(
    root: Path,
    configs: list[DeployConfig],
    ledger_url: str,
    image: str,
    versions: dict[str, dict[str, str]],
) -> Found:
    """A known drift of every kind in every environment; returns what the check must find."""
    import sqlalchemy as sa

    from tasks import schema

    expected: Found = set()
    schema_changes = {
        ENVS[0]: [
            "ALTER TABLE precomputed_reports ADD COLUMN hand_note VARCHAR(20) NULL",
            "ALTER TABLE precomputed_reports MODIFY pdf_s3_key VARCHAR(512) NOT NULL",
        ],
        ENVS[1]: ["ALTER TABLE precomputed_reports MODIFY report_json TEXT NOT NULL"],
        ENVS[2]: ["UPDATE alembic_version SET version_num = '0001'"],
    }
    schema_found = {
        ENVS[0]: {
            ("precomputed_reports", "column extra"),
            ("precomputed_reports.pdf_s3_key", "column nullability"),
        },
        ENVS[1]: {("precomputed_reports.report_json", "column type")},
        ENVS[2]: {("alembic_version", "schema revision"), ("precomputed_reports", "column extra")},
    }
    for config in configs:
        env, lam = config.environment.name, _lam(config)
        fns = config.functions
        name = {k: fn.name for k, fn in fns.items()}

        def env_of(key: str) -> dict[str, str]:
            conf = lam.get_function_configuration(FunctionName=name[key])  # noqa: B023
            return dict(conf["Environment"]["Variables"])

        changed = env_of("f0001") | {"LEVEL": "debug"}
        _update(lam, name["f0001"], Environment={"Variables": changed})
        changed = env_of("f0002") | {"DB_PASSWORD": secrets.token_urlsafe(12)}
        _update(lam, name["f0002"], Environment={"Variables": changed})
        changed = env_of("f0003") | {"HAND_SET": "1"}
        _update(lam, name["f0003"], Environment={"Variables": changed})
        _update(lam, name["f0004"], Timeout=300)
        _update(lam, name["f0005"], MemorySize=2048)
        alias = config.environment.alias
        lam.update_alias(
            FunctionName=name["f0006"], Name=alias, FunctionVersion=_publish(lam, name["f0006"])
        )
        lam.update_alias(
            FunctionName=name["f0007"],
            Name=alias,
            FunctionVersion=versions[env]["f0007"],
            RoutingConfig={"AdditionalVersionWeights": {_publish(lam, name["f0007"]): 0.2}},
        )
        moved = _publish(lam, name["f0008"])
        lam.update_alias(FunctionName=name["f0008"], Name=alias, FunctionVersion=moved)
        record(ledger_url, config, {"f0008": moved}, image, "", Outcome.RUNNING)
        other = "sha256:" + "0" * 64
        record(
            ledger_url,
            config,
            {"f0009": versions[env]["f0009"]},
            image.split("@")[0] + "@" + other,
            other,
        )
        expected |= {
            (env, k, kind)
            for k, kind in (
                ("f0001", "env value"),
                ("f0002", "env value"),
                ("f0003", "undeclared env"),
                ("f0004", "timeout"),
                ("f0005", "memory"),
                ("f0006", "alias not from the ledger"),
                ("f0007", "routing weights left"),
                ("f0008", "stranded deploy"),
                ("f0009", "image digest"),
                ("f0010", "required env not declared"),
            )
        }
        engine = schema.engine(config)
        try:
            with engine.begin() as conn:
                for statement in schema_changes[env]:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()
        expected |= {(env, subject, kind) for subject, kind in schema_found[env]}
    service = root / "deployments" / "service.toml"
    service.write_text(
        service.read_text().replace(
            '[functions.f0010]\nhandler = "app.handler"\nrequired_env = ["TZ",',
            '[functions.f0010]\nhandler = "app.handler"\nrequired_env = ["NEW", "TZ",',
        )
    )
    return expected


# --- the two ways of reading ------------------------------------------------------------------


def sequential(configs: list[DeployConfig]) -> int:
    """The same reads, one after another: per environment ListFunctions (every page), then
    per function GetAlias and GetFunction of each routed version, then the schema."""
    from tasks.drift_schema import read_schema

    requests = 0
    for config in configs:
        lam = _lam(config)
        for _page in lam.get_paginator("list_functions").paginate():
            requests += 1
        for fn in config.functions.values():
            alias = lam.get_alias(FunctionName=fn.name, Name=config.environment.alias)
            weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            routed = [alias["FunctionVersion"], *weights]
            for version in routed:
                lam.get_function(FunctionName=fn.name, Qualifier=version)
            requests += 1 + len(routed)
        read_schema(config)
    return requests


def run_drift(root: Path) -> tuple[Any, float]:
    """The drift flow over every environment, in this process; (report, seconds)."""
    from flows.drift import DriftFound, drift

    started = time.monotonic()
    try:
        report = drift(env="all", project=str(root))
    except DriftFound as found:
        report = found.report
    return report, time.monotonic() - started


def reported(report: Any) -> Found:
    """(env, function or subject, kind) of every difference the report names."""
    return {
        (
            e.env,
            c.evidence.get("function") or c.evidence.get("subject", ""),
            c.evidence.get("kind", ""),
        )
        for e in report.envs
        for c in e.drift
    }


def main(argv: list[str] | None = None) -> int:
    """Build the world, measure both ways, print the figures and the RESULT line."""
    from rehearsal import fidelity, mariadb_setup
    from rehearsal.fault_proxy import FaultProxy
    from rehearsal.stack import push_bootstrap
    from tasks import schema

    parser = argparse.ArgumentParser(prog="bench/drift.py")
    parser.add_argument("--functions", type=int, default=500, help="per environment")
    parser.add_argument("--keep", action="store_true", help="leave the functions in place")
    parser.add_argument(
        "--no-sequential", action="store_true", help="skip the sequential loop (profiling only)"
    )
    args = parser.parse_args(argv)
    apply_env_file()
    base = Path(tempfile.mkdtemp(prefix="drift-bench-"))
    ledger_url = f"sqlite:///{base / 'ledger.sqlite3'}"
    os.environ["GANGWAY_LEDGER_URL"] = ledger_url
    root = make_project(base, args.functions)
    print(f"project {root}; ledger {ledger_url}", flush=True)
    mariadb_setup.ensure_databases(list(ENVS), directory=root / "deployments")
    apply_env_file()
    # The bench's own functions only: no Pending/InProgress waits or stale alias reads while
    # it builds the world (what is measured is reading, not the rehearsal's imitations).
    with fidelity.override(SERVICE, pending_s=0, update_s=0, stale_alias_s=0):
        started = time.monotonic()
        configs = [load_config(env, project=root) for env in ENVS]
        uri, digest, _ = push_bootstrap(configs[0].environment.registry, SERVICE)
        image = f"{uri.rsplit(':', 1)[0]}@{digest}"
        versions: dict[str, dict[str, str]] = {}
        for config in configs:
            delete_functions(config)
            with schema.engine(config).begin() as conn:
                import sqlalchemy as sa

                conn.execute(sa.text("DROP TABLE IF EXISTS precomputed_reports"))
                conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
            schema.upgrade(config)
            versions[config.environment.name] = create_functions(config, uri)
            record(ledger_url, config, versions[config.environment.name], image, digest)
        expected = inject(root, configs, ledger_url, image, versions)
        print(
            f"world: {len(ENVS)} x {args.functions} functions, {len(expected)} drifts "
            f"injected, in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        try:
            with FaultProxy(upstream=configs[0].environment.aws.endpoint_url or "") as proxy:
                proxy.before_forward("*", lambda _r: time.sleep(LATENCY_S), times=10**9)
                os.environ["GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL"] = proxy.url
                report, drift_s = run_drift(root)
                peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                slow = [load_config(env, project=root) for env in ENVS]
                began = time.monotonic()
                requests = 0 if args.no_sequential else sequential(slow)
                sequential_s = time.monotonic() - began or 1e-9
        finally:
            os.environ.pop("GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL", None)
            if not args.keep:
                for config in configs:
                    delete_functions(config)
    found = reported(report)
    hits, false_positives = expected & found, found - expected
    total = len(ENVS) * args.functions
    print(f"{'':24}{'seconds':>10}")
    print(f"{'drift flow':24}{drift_s:>10.1f}   ({report.task_runs} task runs)")
    print(f"{'sequential loop':24}{sequential_s:>10.1f}   ({requests} requests)")
    print(
        f"ratio {drift_s / sequential_s:.3f}; peak RSS {peak_mib:.0f} MiB; found "
        f"{len(hits)}/{len(expected)}; false positives {len(false_positives)}"
    )
    for missed in sorted(expected - found):
        print(f"  MISSED {missed}")
    for extra in sorted(false_positives):
        print(f"  FALSE POSITIVE {extra}")
    result = {
        "functions": total,
        "drift_s": round(drift_s, 2),
        "sequential_s": round(sequential_s, 2),
        "ratio": round(drift_s / sequential_s, 3),
        "injected": len(expected),
        "found": len(hits),
        "false_positives": len(false_positives),
        "peak_mib": round(peak_mib, 1),
        "task_runs": report.task_runs,
    }
    print("RESULT " + json.dumps(result))
    ok = not (expected - found) and not false_positives and drift_s <= 30
    return 0 if ok and result["ratio"] <= 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())
