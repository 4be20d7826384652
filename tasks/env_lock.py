"""One deploy per environment at a time: a MySQL named lock on the environment's database.

The lock lives on one connection held for the whole deploy, so a killed deploy process
releases it with its connection; alias moves of two deploys can never interleave.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gangway.config import DeployConfig
from gangway.errors import DatabaseError, GangwayError
from tasks import schema
from tasks.migrations import lock_name


class DeployLockError(GangwayError):
    """Another deploy to the same environment holds the lock."""

    boundary = "orchestration"


@contextmanager
def deploy_lock(
    config: DeployConfig, timeout_s: int, describe_holder: Callable[[], str]
) -> Iterator[None]:
    """Hold the environment's deploy lock, waiting at most timeout_s for it."""
    name = lock_name(config, "deploy")
    engine = schema.engine(config)
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        raise schema.db_error(config, exc, "taking the deploy lock") from exc
    try:
        got = conn.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": timeout_s}).scalar()
        if got != 1:
            raise DeployLockError(
                f"another deploy to {config.environment.name} is in progress",
                expected=f"the deploy lock {name!r} within {timeout_s}s",
                found=describe_holder(),
                remedy="wait for it to finish (or raise environment.deploy.lock_timeout_s); "
                "a killed deploy releases the lock with its connection",
            )
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
            except SQLAlchemyError as exc:  # the connection dying releases it anyway
                raise DatabaseError(
                    "releasing the deploy lock failed",
                    expected="RELEASE_LOCK to answer",
                    found=str(exc)[:200],
                    remedy="none needed: MySQL frees the lock when the connection closes",
                ) from exc
    finally:
        conn.close()
        engine.dispose()
