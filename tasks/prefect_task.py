"""The thin Prefect layer: turn a plain typed function into an observable, bounded step.

Every step gets a timeout; only transient failures (tasks/transient.py: no answer, throttling,
connection resets, 5xx) are retried, with exponential backoff and jitter; nothing is ever
served from a cache, because a deploy step that "already ran" with the same inputs proves
nothing about the world now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from gangway.errors import GangwayError
from tasks.transient import is_transient


class _DomainErrorsWithoutTraceback(logging.Filter):
    """A gangway error already says what was expected, found and what to do: drop the stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], GangwayError):
            record.exc_info = None
            record.exc_text = None
        return True


for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).addFilter(_DomainErrorsWithoutTraceback())

P = ParamSpec("P")
R = TypeVar("R")


def _retry_condition(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry a step only when its failure is transient."""
    try:
        state.result()
    except BaseException as exc:  # the state re-raises the step's own exception
        return is_transient(exc)
    return False


def step(
    name: str, *, timeout_s: float, retries: int = 0
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Wrap a plain function as a Prefect task with a timeout and transient-only retries."""

    def wrap(fn: Callable[P, R]) -> Task[P, R]:
        return task(
            fn,
            name=name,
            cache_policy=NO_CACHE,
            timeout_seconds=timeout_s,
            retries=retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=0.5) if retries else None,
            retry_jitter_factor=0.5 if retries else None,
            retry_condition_fn=_retry_condition if retries else None,
            persist_result=False,
        )

    return wrap
