"""The drift comparison: what the code needs vs what is declared vs what runs vs the ledger.

Pure: the reads (tasks/drift_lambda.py, drift_schema.py, drift_ledger.py) hand it values and
it returns Checks, one per compared thing, each naming its owner and remedy in its evidence
(``kind``, ``owner``, ``env``, ``function``), so that the pipeline's image is never noise in
Terraform's column. Env values are compared by a keyed hash (HMAC-SHA256, a key per run);
a secret's value never reaches a Check, only its key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gangway.evidence import Check


class Owner(StrEnum):
    """Who fixes a difference."""

    PIPELINE = "pipeline"  # image, published versions, the alias: gangway deploy / rollback
    TERRAFORM = "terraform"  # env, timeout, memory, architecture, package type
    CONFIG = "configuration"  # the same fields, for a service without terraform/
    MIGRATIONS = "migrations"  # the schema
    CODE = "code"  # what the handler requires vs what is declared


class Kind(StrEnum):
    """Every kind of difference the drift check reports."""

    REQUIRED_UNDECLARED = "required env not declared"
    REQUIRED_UNSET = "required env not set"
    ENV_VALUE = "env value"
    ENV_ABSENT = "declared env absent"
    ENV_UNDECLARED = "undeclared env"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    ARCHITECTURE = "architecture"
    PACKAGE_TYPE = "package type"
    MISSING_FUNCTION = "function missing"
    HAND_DEPLOY = "alias not from the ledger"
    IMAGE = "image digest"
    WEIGHTS = "routing weights left"
    STRANDED = "stranded deploy"
    NEVER_DEPLOYED = "never deployed by gangway"
    COLUMN_MISSING = "column missing"
    COLUMN_EXTRA = "column extra"
    COLUMN_TYPE = "column type"
    COLUMN_NULLABLE = "column nullability"
    REVISION = "schema revision"


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of value under the run's key: equal values compare equal, nothing leaks."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeclaredFunction:
    """What the declared source (terraform/ or deployments/) and the code say of a function."""

    key: str
    name: str
    required: tuple[str, ...]
    env_hashes: Mapping[str, str]  # key → keyed hash of the declared value
    env_plain: Mapping[str, str]  # the non-secret declared values, for the report
    timeout: int
    memory: int
    architecture: str
    package_type: str = "Image"


@dataclass(frozen=True)
class LiveLambda:
    """One function as Lambda reports it now (env values hashed at the read)."""

    key: str
    name: str
    package_type: str
    timeout: int
    memory: int
    architectures: tuple[str, ...]
    env_hashes: Mapping[str, str]
    env_plain: Mapping[str, str]  # only keys declared non-secret
    alias_version: str
    weights: Mapping[str, float]
    digests: Mapping[str, str]  # version → image digest, for every version the alias routes to


@dataclass(frozen=True)
class ExpectedRouting:
    """Where the ledger says gangway last left a function's alias."""

    version: str | None
    digest: str | None
    deploy_id: str | None
    kind: str | None


@dataclass(frozen=True)
class StrandedMove:
    """An open ledger record whose traffic move was never settled."""

    deploy_id: str
    kind: str
    key: str
    version_before: str | None
    version_after: str | None


@dataclass(frozen=True)
class LiveColumn:
    """A column as information_schema reports it."""

    data_type: str
    column_type: str
    nullable: bool


@dataclass(frozen=True)
class SchemaReading:
    """An environment's schema: the contract, what the recorded revision implies, and live."""

    contract: Mapping[str, Mapping[str, tuple[str, bool]]]  # table → column → (family, null)
    live: Mapping[str, Mapping[str, LiveColumn]]
    implied: Mapping[str, frozenset[str]]  # table → columns the recorded revision's DDL gives
    revision: str | None
    head: str | None
    compatible: Mapping[str, frozenset[str]] = field(default_factory=dict)


def finding(
    env: str,
    kind: Kind,
    owner: Owner,
    subject: str,
    *,
    ok: bool,
    expected: str,
    found: str,
    remedy: str,
    function: str = "",
    **evidence: Any,
) -> Check:
    """One compared thing as a Check whose evidence names its kind and owner."""
    return Check(
        name=f"{env} · {subject}: {kind.value}",
        ok=ok,
        expected=expected,
        found=found,
        remedy="" if ok else remedy,
        evidence={
            "env": env,
            "kind": kind.value,
            "owner": owner.value,
            "function": function,
            "subject": subject,
            **evidence,
        },
    )


# --- configuration: Terraform (or deployments/) vs live, and the code's requirements --------


def _env_checks(
    env: str, declared: DeclaredFunction, live: LiveLambda, owner: Owner, source: str
) -> list[Check]:
    subject = f"{declared.key} ({declared.name})"
    checks: list[Check] = []

    def add(
        kind: Kind,
        owner_: Owner,
        keys: Sequence[str],
        expected: str,
        found: str,
        remedy: str,
        **extra: Any,
    ) -> None:
        checks.append(
            finding(
                env,
                kind,
                owner_,
                subject,
                ok=not keys,
                expected=expected,
                found=found if keys else "as expected",
                remedy=remedy,
                function=declared.key,
                keys=list(keys),
                **extra,
            )
        )

    undeclared_required = [k for k in declared.required if k not in declared.env_hashes]
    add(
        Kind.REQUIRED_UNDECLARED,
        Owner.CODE,
        undeclared_required,
        f"every key the handler requires declared in {source}",
        f"not declared: {', '.join(undeclared_required)}",
        f"declare {', '.join(undeclared_required)} for {declared.key} in {source}, or drop them "
        f"from functions.{declared.key}.required_env if the handler no longer reads them",
        source=source,
    )
    # A key nobody declares is the code's difference (above), not an unapplied declaration.
    unset = [
        k for k in declared.required if k not in live.env_hashes and k in declared.env_hashes
    ]
    add(
        Kind.REQUIRED_UNSET,
        owner,
        unset,
        "every key the handler requires set on the live function",
        f"unset: {', '.join(unset)}",
        f"apply {source} to {env} (the live function lacks them)",
        source=source,
    )
    differ = sorted(
        k
        for k, h in declared.env_hashes.items()
        if k in live.env_hashes and not hmac.compare_digest(h, live.env_hashes[k])
    )
    shown = [
        f"{k}: declared {declared.env_plain[k]!r}, live {live.env_plain.get(k, '?')!r}"
        if k in declared.env_plain
        else f"{k}: differs (secret, compared by keyed hash)"
        for k in differ
    ]
    add(
        Kind.ENV_VALUE,
        owner,
        differ,
        f"live values as declared in {source}",
        "; ".join(shown),
        f"apply {source} to {env} (someone changed {', '.join(differ)} outside it), or change "
        f"{source} if the new value is meant",
    )
    absent = sorted(k for k in declared.env_hashes if k not in live.env_hashes and k not in unset)
    add(
        Kind.ENV_ABSENT,
        owner,
        absent,
        f"every key {source} declares set",
        "absent: " + ", ".join(absent),
        f"apply {source} to {env}",
    )
    extra = sorted(k for k in live.env_hashes if k not in declared.env_hashes)
    add(
        Kind.ENV_UNDECLARED,
        owner,
        extra,
        f"only the keys {source} declares",
        "set but not declared: " + ", ".join(extra),
        f"declare {', '.join(extra)} in {source} if they are needed, else remove them from the "
        "function (apply)",
    )
    return checks


def _runtime_checks(
    env: str, declared: DeclaredFunction, live: LiveLambda, owner: Owner, source: str
) -> list[Check]:
    subject = f"{declared.key} ({declared.name})"
    pairs = (
        (Kind.PACKAGE_TYPE, declared.package_type, live.package_type, ""),
        (Kind.TIMEOUT, declared.timeout, live.timeout, " s"),
        (Kind.MEMORY, declared.memory, live.memory, " MB"),
        (Kind.ARCHITECTURE, declared.architecture, ",".join(live.architectures), ""),
    )
    return [
        finding(
            env,
            kind,
            owner,
            subject,
            ok=want == have,
            expected=f"{want}{unit}",
            found=f"{have}{unit}",
            remedy=f"apply {source} to {env} (the live {kind.value} was changed outside "
            f"it), or change it in {source} if the design changed",
            function=declared.key,
            declared=want,
            live=have,
        )
        for kind, want, have, unit in pairs
    ]


def configuration_drift(
    env: str,
    declared: Sequence[DeclaredFunction],
    live: Mapping[str, LiveLambda | None],
    owner: Owner,
    source: str,
) -> list[Check]:
    """Per function: required keys, env keys and values, timeout, memory, architecture."""
    checks: list[Check] = []
    for fn in declared:
        found = live.get(fn.key)
        if found is None:
            checks.append(
                finding(
                    env,
                    Kind.MISSING_FUNCTION,
                    owner,
                    f"{fn.key} ({fn.name})",
                    ok=False,
                    expected=f"function {fn.name}",
                    found="does not exist",
                    remedy=f"apply {source} to {env} (it creates the function)",
                    function=fn.key,
                )
            )
            continue
        checks += _runtime_checks(env, fn, found, owner, source)
        checks += _env_checks(env, fn, found, owner, source)
    return checks


# --- code placement: the live alias vs the ledger --------------------------------------------


def routing_drift(
    env: str,
    live: Mapping[str, LiveLambda | None],
    expected: Mapping[str, ExpectedRouting],
    stranded: Sequence[StrandedMove],
) -> list[Check]:
    """Per function: the alias's version and image vs the ledger; weights left; open moves."""
    checks: list[Check] = []
    open_keys = {s.key for s in stranded}
    # Where an open record moved the alias, that record explains it: reported as stranded.
    explained = {(s.key, v) for s in stranded for v in (s.version_before, s.version_after) if v}
    for key, fn in live.items():
        if fn is None:
            continue
        subject = f"{key} ({fn.name})"
        want = expected.get(key)
        if want is None or want.version is None:
            checks.append(
                finding(
                    env,
                    Kind.NEVER_DEPLOYED,
                    Owner.PIPELINE,
                    subject,
                    ok=False,
                    expected="a successful gangway deploy or promotion in the ledger",
                    found=f"alias → {fn.alias_version}, no ledger record put it there",
                    remedy=f"gangway deploy --env {env} (or promote): the ledger must know it",
                    function=key,
                    live_version=fn.alias_version,
                )
            )
            continue
        record = f"{want.kind} {(want.deploy_id or '')[:12]}"
        checks.append(
            finding(
                env,
                Kind.HAND_DEPLOY,
                Owner.PIPELINE,
                subject,
                ok=fn.alias_version == want.version or (key, fn.alias_version) in explained,
                expected=f"alias → {want.version} (ledger: {record})",
                found=f"alias → {fn.alias_version}",
                remedy=f"a hand deploy or a moved alias: `gangway rollback --env {env} --to "
                f"{(want.deploy_id or '')[:12]}` puts back what the ledger recorded, or deploy the "
                "intended commit with gangway",
                function=key,
                ledger_version=want.version,
                live_version=fn.alias_version,
                deploy_id=want.deploy_id,
            )
        )
        live_digest = fn.digests.get(fn.alias_version, "")
        if want.digest and fn.alias_version == want.version:
            checks.append(
                finding(
                    env,
                    Kind.IMAGE,
                    Owner.PIPELINE,
                    subject,
                    ok=live_digest == want.digest,
                    expected=f"image {want.digest} (ledger: {record})",
                    found=f"image {live_digest or '(unknown)'}",
                    remedy=f"version {fn.alias_version} runs another image than recorded: redeploy "
                    f"with `gangway deploy --env {env}`",
                    function=key,
                    ledger_digest=want.digest,
                    live_digest=live_digest,
                )
            )
        if key not in open_keys:
            checks.append(
                finding(
                    env,
                    Kind.WEIGHTS,
                    Owner.PIPELINE,
                    subject,
                    ok=not fn.weights,
                    expected="no additional routing weights (no deploy running)",
                    found="weights "
                    + ", ".join(f"{v}: {w:.0%}" for v, w in sorted(fn.weights.items()))
                    if fn.weights
                    else "none",
                    remedy=f"a canary split left on the alias: `gangway rollback --env {env}` or "
                    "finish the deploy; remove the RoutingConfig",
                    function=key,
                    weights=dict(fn.weights),
                )
            )
    for move in stranded:
        fn = live.get(move.key)
        where = fn.alias_version if fn else "?"
        checks.append(
            finding(
                env,
                Kind.STRANDED,
                Owner.PIPELINE,
                f"{move.key} ({fn.name})" if fn else move.key,
                ok=False,
                expected=f"{move.kind} {move.deploy_id[:12]} settled (succeeded or restored)",
                found=f"open record moved the alias {move.version_before} → {move.version_after}; "
                f"alias now → {where}",
                remedy=f"the reconciler (reconcile-{env}) restores it within a minute; else "
                f"`gangway unlock --env {env}` then `gangway rollback --env {env}`",
                function=move.key,
                deploy_id=move.deploy_id,
            )
        )
    return checks


# --- schema: live vs the table contract and vs the migrations ------------------------------


def schema_drift(env: str, reading: SchemaReading) -> list[Check]:
    """Missing/extra columns, type family and nullability, and the revision vs head.

    Types are compared by family (varchar/char, json/longtext, int widths...): MariaDB's and
    MySQL's spellings of one type are not drift, unlike alembic's autogenerate on MySQL."""
    checks: list[Check] = []
    remedy_migrate = (
        f"write a migration for it, or run the pending ones (gangway deploy --env {env})"
    )
    for table, columns in reading.contract.items():
        have = reading.live.get(table, {})
        for column, (family, nullable) in columns.items():
            subject = f"{table}.{column}"
            live = have.get(column)
            if live is None:
                checks.append(
                    finding(
                        env,
                        Kind.COLUMN_MISSING,
                        Owner.MIGRATIONS,
                        subject,
                        ok=False,
                        expected=f"{family} column the code writes",
                        found="no such column",
                        remedy=remedy_migrate,
                        table=table,
                        column=column,
                    )
                )
                continue
            accepted = reading.compatible.get(family, frozenset({family}))
            checks.append(
                finding(
                    env,
                    Kind.COLUMN_TYPE,
                    Owner.MIGRATIONS,
                    subject,
                    ok=live.data_type.lower() in accepted,
                    expected=f"a {family} type",
                    found=live.column_type,
                    remedy=remedy_migrate,
                    table=table,
                    column=column,
                )
            )
            checks.append(
                finding(
                    env,
                    Kind.COLUMN_NULLABLE,
                    Owner.MIGRATIONS,
                    subject,
                    ok=live.nullable == nullable,
                    expected="NULL" if nullable else "NOT NULL",
                    found="NULL" if live.nullable else "NOT NULL",
                    remedy=remedy_migrate,
                    table=table,
                    column=column,
                )
            )
    for table, implied in reading.implied.items():
        have = set(reading.live.get(table, {}))
        extra = sorted(have - implied)
        missing = sorted(implied - have)
        checks.append(
            finding(
                env,
                Kind.COLUMN_EXTRA,
                Owner.MIGRATIONS,
                table,
                ok=not extra and not missing,
                expected=f"the columns revision {reading.revision} creates",
                found=f"not created by a migration: {extra or '-'}; missing: {missing or '-'}",
                remedy="a column changed by hand: drop it or write the migration that makes it "
                "part of the history (MySQL DDL is not transactional)",
                table=table,
                extra=extra,
                missing=missing,
            )
        )
    checks.append(
        finding(
            env,
            Kind.REVISION,
            Owner.MIGRATIONS,
            "alembic_version",
            ok=reading.revision == reading.head,
            expected=f"revision {reading.head} (the migrations' head)",
            found=f"revision {reading.revision or 'base'}",
            remedy=f"run the pending migrations (gangway deploy --env {env})",
            revision=reading.revision,
            head=reading.head,
        )
    )
    return checks
