"""Execution-role credentials for the moto bridge's invokes, from moto's STS in-process.

Lambda hands a function's runtime temporary credentials of its execution role; whatever
the handler then calls is authorized against that role's policies. The bridge does the same:
``sts:AssumeRole`` on moto's backend (a 15-minute session, cached per role until it is near
expiry), and ``moto_bridge._authorize`` evaluates requests signed with such a key against the
role's attached and inline policies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.sts import models as sts_models
from moto.utilities.utils import PARTITION_NAMES

from rehearsal.iam import remember_secret

SESSION_S = 900
# A session this close to its end is replaced, so a warm environment never runs on a token
# that expires during its warm time.
RENEW_BEFORE_S = 300


@dataclass(frozen=True)
class RoleCredentials:
    """One assumed-role session: what the function's runtime gets in its environment."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime


_lock = threading.Lock()
_sessions: dict[tuple[str, str], RoleCredentials] = {}


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # moto keeps naive UTC


def peek(fn: Any) -> RoleCredentials | None:
    """The cached session for fn's role, without assuming a new one."""
    with _lock:
        return _sessions.get((str(fn.account_id), str(fn.role)))


def for_function(fn: Any) -> RoleCredentials:
    """Credentials of fn's execution role (assumed on moto's STS, reused until near expiry)."""
    cache_key = (str(fn.account_id), str(fn.role))
    with _lock:
        cached = _sessions.get(cache_key)
        if cached and cached.expiration - _utcnow() > timedelta(seconds=RENEW_BEFORE_S):
            return cached
        backend = sts_models.sts_backends[fn.account_id][fn.partition]
        role = backend.assume_role(
            region_name=fn.region,
            role_session_name=str(fn.function_name)[:64],
            role_arn=str(fn.role),
            policy="",
            duration=SESSION_S,
            external_id="",
        )
        fresh = RoleCredentials(
            role.access_key_id, role.secret_access_key, role.session_token, role.expiration
        )
        # A handler could log its environment: the sweep must know what to look for.
        remember_secret(fresh.secret_access_key)
        remember_secret(fresh.session_token)
        _sessions[cache_key] = fresh
        return fresh


def session_of(key_id: str) -> Any | None:
    """The assumed-role session (moto's AssumedRole) whose access key is key_id, if any."""
    if not key_id.startswith("ASIA"):
        return None  # moto issues role sessions ASIA keys; the rest need no search
    for account in list(sts_models.sts_backends.values()):
        for partition in PARTITION_NAMES:
            found = account[partition].get_assumed_role_from_access_key(key_id)
            if found is not None:
                return found
    return None
