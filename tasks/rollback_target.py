"""Which deploy a rollback returns to: read from the ledger and the live aliases (read-only).

A record's versions are its functions' ``version_after``. The live record is the newest
succeeded deploy, promotion or rollback of the service in the environment whose versions the
aliases route all traffic to. Without ``--to`` the target is the newest succeeded deploy or
promotion before it (a live rollback stands where its own target stands, so a second rollback
goes further back) whose versions differ from what is live. Every refusal is a ConfigError
(nothing has moved yet).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gangway.config import DeployConfig
from gangway.errors import ConfigError
from gangway.record import DeployRecord, Outcome
from tasks.aws import aws_error, client, error_code
from tasks.lambda_read import NOT_FOUND, LiveFunction
from tasks.ledger import Ledger, of_service

KINDS = ("deploy", "promote", "rollback")
SHORT_ID_MIN = 8  # as `gangway ledger show` resolves a prefix
HISTORY = 500  # succeeded records looked at, newest first


def versions_of(record: DeployRecord) -> dict[str, str]:
    """Function key → the version the record put its alias on (keys without one omitted)."""
    return {k: m.version_after for k, m in record.functions.items() if m.version_after}


def live_versions(live: dict[str, LiveFunction]) -> dict[str, str]:
    """Function key → the version its alias routes all traffic to (split aliases omitted)."""
    return {k: fn.alias.version for k, fn in live.items() if not fn.alias.weights}


def rolled_back_to(record: DeployRecord) -> str:
    """The deploy id a rollback record returned to ('' for any other record)."""
    return str(record.traffic.get("rollback_to", "")) if record.kind == "rollback" else ""


def history(ledger: Ledger, config: DeployConfig) -> list[DeployRecord]:
    """The service's succeeded deploys, promotions and rollbacks in the environment, newest
    first."""
    env, service = config.environment.name, config.service.name
    return [
        r
        for r in ledger.recent(env, limit=HISTORY, service=service)
        if r.outcome is Outcome.SUCCEEDED and r.kind in KINDS and r.service == service
    ]


def _matches(record: DeployRecord, live: dict[str, LiveFunction]) -> bool:
    routed = live_versions(live)
    return len(routed) == len(live) and all(
        versions_of(record).get(k) == v for k, v in routed.items()
    )


def find_live(records: list[DeployRecord], live: dict[str, LiveFunction]) -> DeployRecord | None:
    """The newest record whose versions every alias routes all traffic to."""
    return next((r for r in records if _matches(r, live)), None)


def resolve_ref(ledger: Ledger, config: DeployConfig, ref: str) -> DeployRecord:
    """The record --to names (a deploy id or a unique prefix of 8+ characters); it must be a
    succeeded deploy, promotion or rollback of this service in this environment."""
    record = ledger.get(ref)
    if record is None and len(ref) >= SHORT_ID_MIN:
        matches = ledger.by_id_prefix(ref, limit=11)
        if len(matches) > 1:
            raise ConfigError(
                f"deploy id prefix {ref!r} is ambiguous",
                expected="a prefix that names one deploy",
                found=", ".join(r.deploy_id for r in matches[:10]),
                remedy="pass more characters of the id, or the whole id",
            )
        record = matches[0] if matches else None
    if record is None:
        raise ConfigError(
            f"no deploy {ref!r} in the ledger",
            expected=f"--to a deploy id (or its first {SHORT_ID_MIN}+ characters)",
            found="no record" if len(ref) >= SHORT_ID_MIN else f"{len(ref)} characters",
            remedy="list them with `gangway ledger list --env ENV`",
        )
    env, service = config.environment.name, config.service.name
    problems = []
    if record.env != env:
        problems.append(f"environment {record.env}")
    if not of_service(record, service):
        problems.append(f"service {record.service}")
    if record.outcome is not Outcome.SUCCEEDED:
        problems.append(f"outcome {record.outcome.value}")
    if record.kind not in KINDS:
        problems.append(f"kind {record.kind}")
    if problems:
        raise ConfigError(
            f"deploy {record.deploy_id} cannot be rolled back to",
            expected=f"a succeeded {'/'.join(KINDS)} of {service} in {env}",
            found=", ".join(problems),
            remedy="pick one from `gangway ledger list --env " + env + "`",
        )
    return record


def choose_target(
    ledger: Ledger, config: DeployConfig, live: dict[str, LiveFunction], to: str | None
) -> tuple[DeployRecord, DeployRecord | None]:
    """(the target, the live record or None when no record explains the aliases)."""
    records = history(ledger, config)
    current = find_live(records, live)
    env = config.environment.name
    target = resolve_ref(ledger, config, to) if to else None
    if target is None:
        if current is None:
            raise ConfigError(
                f"no succeeded deploy in the ledger explains what is live in {env}",
                expected="the aliases on the versions of a succeeded deploy, promotion or rollback",
                found=", ".join(f"{fn.name}: {fn.alias.describe()}" for fn in live.values()),
                remedy="name the deploy to return to with --to DEPLOY_ID",
            )
        target = _previous(ledger, records, current, live)
    missing = sorted(set(live) - set(versions_of(target)))
    if missing:
        raise ConfigError(
            f"deploy {target.deploy_id} recorded no version for {', '.join(missing)}",
            expected="a version for every function the service has now",
            found=f"versions for {', '.join(sorted(versions_of(target))) or 'none'}",
            remedy="roll back to a deploy made since those functions exist (--to)",
        )
    if _matches(target, live):
        raise ConfigError(
            f"deploy {target.deploy_id} is what is live in {env} already",
            expected="a target whose versions differ from the aliases'",
            found=", ".join(f"{fn.name}: {fn.alias.describe()}" for fn in live.values()),
            remedy="nothing to roll back; name an older deploy with --to",
        )
    return target, current


def _previous(
    ledger: Ledger, records: list[DeployRecord], current: DeployRecord, live: dict[str, Any]
) -> DeployRecord:
    """The newest deploy or promotion older than the one current stands for, not live now."""
    anchor = current
    if rolled_back_to(current):
        anchor = ledger.get(rolled_back_to(current)) or current
    older = [r for r in records if r.started_at < anchor.started_at]
    found = next((r for r in older if r.kind != "rollback" and not _matches(r, live)), None)
    if found is None:
        raise ConfigError(
            f"no succeeded deploy before {anchor.deploy_id} to roll back to",
            expected="an older succeeded deploy or promotion of this service here",
            found=f"{len(records)} succeeded records, none older with other versions",
            remedy="name the deploy with --to, or deploy the commit you want",
        )
    return found


def pruned_versions(config: DeployConfig, target: DeployRecord) -> list[str]:
    """The target's function versions Lambda no longer has ('name:version' each)."""
    lam = client(config, "lambda")
    gone = []
    for key, version in sorted(versions_of(target).items()):
        name = target.functions[key].name
        try:
            lam.get_function_configuration(FunctionName=name, Qualifier=version)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) != NOT_FOUND:
                action = "lambda:GetFunctionConfiguration"
                raise aws_error(exc, action, f"{name}:{version}") from exc
            gone.append(f"{name}:{version}")
    return gone
