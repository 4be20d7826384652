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

import httpx
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


# ------------------------------------------------------------------ the Prefect API's presence
# Prefect 3.8 orchestrates task runs client-side (their states travel as events, dropped while
# the API is away), but every API call the engine or gangway makes (flow-run states, artifacts)
# is retried 5 times over ~62 s and then raises httpx.ConnectError. A deploy therefore probes
# the API itself, briefly, at every step boundary instead of discovering the outage minutes late.
API_PROBE_TIMEOUT_S = 2.0
_lost: PrefectUnreachable | None = None
_retries_before: int | None = None


class PrefectUnreachable(GangwayError):
    """The Prefect API (the orchestration view of a deploy) does not answer."""

    boundary = "orchestration"


def api_url() -> str:
    """The Prefect API this process reports to ("" when Prefect runs an ephemeral server)."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


def api_lost() -> PrefectUnreachable | None:
    """The error of the last failed probe, while the API is known to be away."""
    return _lost


def require_api(timeout_s: float = API_PROBE_TIMEOUT_S) -> None:
    """Raise PrefectUnreachable unless the Prefect API's /health answers within timeout_s."""
    global _lost
    url = api_url()
    if not url:
        return
    headers: dict[str, str] = {}
    if key := _api_key():
        headers["Authorization"] = f"Bearer {key}"
    try:
        answer = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s, headers=headers)
        found = "" if answer.status_code == 200 else f"HTTP {answer.status_code}"
    except httpx.HTTPError as exc:
        found = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not found:
        if _lost is not None:
            _lost = None
            _set_client_retries(_retries_before)
        return
    _lost = PrefectUnreachable(
        f"the Prefect API at {url} does not answer",
        expected=f"GET {url.rstrip('/')}/health answering within {timeout_s:g} s (a deploy "
        "reports every step to Prefect and can be cancelled from it)",
        found=found,
        remedy="start the Prefect server (the rehearsal: `gangway stack up`) or point "
        "PREFECT_API_URL at a running one, then re-run the deploy; the ledger holds this "
        "attempt's whole record (`gangway ledger show <id>`); Prefect's view of this flow run "
        "stays as it was when the API went away",
    )
    # Every further call by Prefect's own engine (the flow run's final state) would wait ~62 s
    # before failing the same way: fail at once instead, for as long as the API is away.
    _set_client_retries(0)
    raise _lost


def _api_key() -> str:
    from prefect.settings import PREFECT_API_KEY

    key = PREFECT_API_KEY.value()
    return key.get_secret_value() if hasattr(key, "get_secret_value") else str(key or "")


def _set_client_retries(retries: int | None) -> None:
    global _retries_before
    from prefect.context import get_settings_context

    client = get_settings_context().settings.client
    if retries is None:
        return
    if _retries_before is None:
        _retries_before = client.max_retries
    client.max_retries = retries
