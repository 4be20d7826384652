"""Ground-truth evidence: the row is in the table and the object is in the bucket, as claimed.

The silent-data-loss incident returned success and a ``pdf_s3_key`` while the INSERT dropped
the column; only the table showed it. So the row a smoke case promises is read back with
bound parameters and checked column by column, and the object is checked with head_object.
A column the data contract declares ``json`` must hold one JSON document: a double-encoded
string or a Python repr reads back fine through code that makes the same mistake twice, and
is wrong for every other reader.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from gangway.config import IDENTIFIER, DeployConfig, ObjectTruth, RowTruth, SmokeCase
from gangway.errors import GangwayError
from gangway.evidence import Check, GateResult, Strength
from gangway.redact import scrub
from tasks import schema
from tasks.aws import aws_error, client
from tasks.json_values import MISSING, double_encoded, loads, lookup, substitute
from tasks.smoke_check import response_fields

SHOW = 120
FIELD_PREFIX = "$."


class Unresolved(Exception):
    """A ``$.field`` the response does not carry."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(reference)


def resolve(value: Any, fields: Mapping[str, Any] | None, correlation_id: str) -> Any:
    """A literal, ``{correlation_id}`` substituted, or the response field ``$.field`` names."""
    if isinstance(value, str) and value.startswith(FIELD_PREFIX):
        found = lookup(fields, value.removeprefix(FIELD_PREFIX)) if fields is not None else MISSING
        if found is MISSING:
            raise Unresolved(value)
        return found
    return substitute(value, correlation_id)


def _show(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, datetime | date):
        value = value.isoformat()
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:SHOW] + "…") if len(text) > SHOW else repr(text)


def _text(value: Any) -> str:
    """A column value as text, the way the response and the config spell it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def same(have: Any, want: Any) -> bool:
    """Equal, or equal once both are spelled as text (a DATE against '2000-01-03')."""
    if have is None or want is None:
        return have is None and want is None
    return bool(have == want) or _text(have) == _text(want)


def _unresolved_check(name: str, exc: Unresolved, fields: Mapping[str, Any] | None) -> Check:
    have = ", ".join(fields) if fields else "no usable response"
    return Check(
        name=name,
        ok=False,
        expected=f"{exc.reference} in the smoke response",
        found=f"{exc.reference} is missing from the response (fields: {have[:SHOW]})",
        remedy="the handler must return the field the ground truth refers to, or fix the case",
    )


# ---------------------------------------------------------------- the row


def row_checks(
    config: DeployConfig,
    truth: RowTruth,
    fields: Mapping[str, Any] | None,
    correlation_id: str,
) -> list[Check]:
    """The row exists and its columns hold what the case says."""
    where = f"row in {truth.table}"
    try:
        match = {c: resolve(v, fields, correlation_id) for c, v in truth.match.items()}
        equals = {c: resolve(v, fields, correlation_id) for c, v in truth.equals.items()}
        contains = {c: str(resolve(v, fields, correlation_id)) for c, v in truth.contains.items()}
    except Unresolved as exc:
        return [_unresolved_check(where, exc, fields)]
    if not match:
        return [
            Check(
                name=where,
                ok=False,
                expected="match names the row's key columns",
                found="an empty match (any row would do)",
                remedy=f"set smoke.ground_truth.row.match for {truth.table}",
            )
        ]
    wanted = list(dict.fromkeys([*match, *truth.not_null, *equals, *contains]))
    documents = _json_columns(config, truth.table)
    try:
        live = schema.columns(config, truth.table)
    except GangwayError as exc:
        return [
            Check(name=where, ok=False, expected=exc.expected, found=exc.found, remedy=exc.remedy)
        ]
    if not live:
        return [
            Check(
                name=where,
                ok=False,
                expected=f"table {truth.table} exists",
                found="no such table",
                remedy="apply the migrations before the code (migration before code)",
            )
        ]
    # Every json column of the contract is read back too, named by the case or not.
    wanted += [c for c in documents if c in live and c not in wanted]
    absent = [c for c in wanted if c not in live]
    checks = [
        Check(
            name=f"{truth.table}.{c}",
            ok=False,
            expected=f"column {c} exists",
            found=f"{truth.table} has no column {c}: the code's value for it cannot be stored",
            remedy="add the column with a migration, applied before the code that writes it",
        )
        for c in absent
    ]
    present = [c for c in wanted if c in live]
    if any(c in absent for c in match):
        return checks
    try:
        row, count = _select(config, truth.table, present, match)
    except SQLAlchemyError as exc:
        found = f"{type(getattr(exc, 'orig', exc)).__name__}: {getattr(exc, 'orig', exc)}"
        return [*checks, Check(name=where, ok=False, expected="a readable row", found=found[:400])]
    described = ", ".join(f"{c}={_show(v)}" for c, v in match.items())
    checks.append(
        Check(
            name=where,
            ok=row is not None,
            expected=f"a row with {described}",
            found=f"{count} row(s)" if row is not None else "no matching row",
            remedy="" if row is not None else "the handler reported success but stored nothing",
        )
    )
    if row is not None:
        checks.extend(_column_checks(truth, row, equals, contains, absent))
        checks.extend(_json_checks(truth.table, row, [c for c in documents if c in row]))
    return checks


def _json_columns(config: DeployConfig, table: str) -> list[str]:
    """The columns of table the data contract ([[tables]]) declares as json."""
    return [
        name
        for contract in config.tables
        if contract.name == table
        for name, spec in contract.columns.items()
        if spec.type == "json"
    ]


def json_problem(value: Any) -> str:
    """What is wrong with a stored JSON document, or "" when it is one (NULL is not_null's)."""
    if value is None:
        return ""
    text = _text(value)
    try:
        document = loads(text)
    except ValueError as exc:
        # A dict interpolated as text is a Python repr: single quotes, True/None.
        repr_like = text.lstrip()[:2] in ("{'", "['") or "': " in text[:SHOW]
        hint = " (a Python repr, not JSON)" if repr_like else ""
        return f"not JSON{hint} ({exc}): {_show(text)}"
    if isinstance(document, str):
        inner = double_encoded(document)
        if inner:
            return f"a JSON string holding JSON {inner} (double-encoded): {_show(text)}"
    return ""


def _json_checks(table: str, row: Mapping[str, Any], columns: list[str]) -> list[Check]:
    checks = []
    for column in columns:
        problem = json_problem(row[column])
        checks.append(
            Check(
                name=f"{table}.{column}",
                ok=not problem,
                expected=f"{column} holds one JSON document (the data contract says json)",
                found=problem or "a JSON document",
                remedy=""
                if not problem
                else f"store json.dumps(document) exactly once; a reader that decodes "
                f"{column} twice (or eval()s it) hides the bug from the app but not from "
                "SQL JSON functions or other services",
            )
        )
    return checks


def _select(
    config: DeployConfig, table: str, columns: list[str], match: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, int]:
    # The config model validated every identifier; checked again because they are interpolated,
    # and back-quoted because a column may be a reserved word.
    for name in (table, *columns, *match):
        if not IDENTIFIER.match(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")
    names = ", ".join(f"`{c}`" for c in columns)
    where = " AND ".join(f"`{c}` = :m{i}" for i, c in enumerate(match))
    params = {f"m{i}": v for i, v in enumerate(match.values())}
    query = sa.text(f"SELECT {names} FROM `{table}` WHERE {where} LIMIT 2")
    engine = schema.engine(config)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query, params).mappings().all()
    finally:
        engine.dispose()
    return (dict(rows[0]) if rows else None), len(rows)


def _column_checks(
    truth: RowTruth,
    row: Mapping[str, Any],
    equals: Mapping[str, Any],
    contains: Mapping[str, str],
    absent: list[str],
) -> list[Check]:
    checks = []
    for column in (c for c in truth.not_null if c not in absent):
        value = row[column]
        checks.append(
            Check(
                name=f"{truth.table}.{column}",
                ok=value is not None,
                expected=f"{column} is not NULL",
                found=f"{column} = {_show(value)}",
                remedy=""
                if value is not None
                else f"the INSERT does not write {column} (or writes None): check the column "
                "list the code writes against the data contract",
            )
        )
    for column, want in ((c, w) for c, w in equals.items() if c not in absent):
        value = row[column]
        ok = same(value, want)
        checks.append(
            Check(
                name=f"{truth.table}.{column}",
                ok=ok,
                expected=f"{column} = {_show(want)}",
                found=f"{column} = {_show(value)}",
                remedy="" if ok else f"the stored {column} differs from what the handler returned",
            )
        )
    for column, part in ((c, p) for c, p in contains.items() if c not in absent):
        value = row[column]
        ok = value is not None and part in _text(value)
        checks.append(
            Check(
                name=f"{truth.table}.{column}",
                ok=ok,
                expected=f"{column} contains {_show(part)}",
                found=f"{column} = {_show(value)}",
                remedy="" if ok else f"the stored {column} is not this invocation's",
            )
        )
    return checks


# ---------------------------------------------------------------- the object


def object_checks(
    config: DeployConfig,
    truth: ObjectTruth,
    fields: Mapping[str, Any] | None,
    correlation_id: str,
) -> list[Check]:
    """The object exists with the content type and size the case says."""
    try:
        bucket = str(resolve(truth.bucket or config.environment.bucket, fields, correlation_id))
        key = str(resolve(truth.key, fields, correlation_id))
        size = resolve(truth.size, fields, correlation_id)
    except Unresolved as exc:
        return [_unresolved_check("object in bucket", exc, fields)]
    where = f"s3://{bucket}/{key}"
    try:
        head = client(config, "s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        missing = status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey")
        err = aws_error(exc, "s3:GetObject (head_object)", where)
        return [
            Check(
                name="object in bucket",
                ok=False,
                expected=f"{where} exists",
                found="no such object" if missing else err.found,
                remedy="the handler reported a key it did not upload" if missing else err.remedy,
            )
        ]
    except BotoCoreError as exc:
        err = aws_error(exc, "s3:GetObject (head_object)", where)
        return [Check(name="object in bucket", ok=False, expected=err.expected, found=err.found)]
    return _head_checks(truth, where, head, size)


def _head_checks(truth: ObjectTruth, where: str, head: Mapping[str, Any], size: Any) -> list[Check]:
    length = int(head.get("ContentLength", -1))
    checks = [Check(name="object in bucket", ok=True, expected=f"{where} exists", found="exists")]
    if truth.content_type is not None:
        have = head.get("ContentType")
        ok = have == truth.content_type
        checks.append(
            Check(
                name="object content type",
                ok=ok,
                expected=truth.content_type,
                found=str(have),
                remedy="" if ok else "set ContentType on put_object",
            )
        )
    if size is not None:
        try:
            want = int(size)
        except (TypeError, ValueError):
            want = None
        ok = want is not None and length == want
        expected, found = f"{size} bytes", f"{length} bytes"
    else:
        ok, expected, found = length >= truth.min_size, f">= {truth.min_size} bytes", f"{length}"
    checks.append(
        Check(
            name="object size",
            ok=ok,
            expected=expected,
            found=found,
            remedy="" if ok else "the stored object is not what the handler rendered",
        )
    )
    return checks


def check_ground_truth(
    config: DeployConfig, case: SmokeCase, payload: Mapping[str, Any] | None, correlation_id: str
) -> GateResult:
    """Check the row and object the case's smoke invoke must have left behind.

    payload is the parsed invoke response (a proxy response's body is read for ``$.field``).
    A case without ground truth is reported as skipped: no evidence is not a pass.
    """
    started = time.monotonic()
    gate = f"ground truth: {case.name}"
    truth = case.ground_truth
    if truth is None or (truth.row is None and truth.object is None):
        return GateResult(
            gate=gate,
            boundary="data",
            strength=Strength.GROUND_TRUTH,
            skipped_reason=f"smoke case {case.name!r} declares no ground truth",
        )
    fields = response_fields(dict(payload)) if payload is not None else None
    checks: list[Check] = []
    if truth.row is not None:
        checks.extend(row_checks(config, truth.row, fields, correlation_id))
    if truth.object is not None:
        checks.extend(object_checks(config, truth.object, fields, correlation_id))
    return GateResult(
        gate=gate,
        boundary="data",
        strength=Strength.GROUND_TRUTH,
        checks=tuple(scrub(c, config.secret_values()) for c in checks),
        duration_s=time.monotonic() - started,
    )
