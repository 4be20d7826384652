"""The smoke gate: every case invoked (tasks/lambda_invoke.py), judged (tasks/smoke_check.py).

Cases of different functions run concurrently; cases of one function, and a case and the cases
its ``after`` names, run in their declared order, since a later case may read what an earlier
one wrote. Outcomes are reported in the declared order whatever order they finished in, each
with the request id that ties it to its log lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from gangway.config import DeployConfig, SmokeCase
from gangway.evidence import Check, GateResult, Status, Strength
from gangway.redact import scrub
from tasks.json_values import loads, substitute
from tasks.lambda_invoke import InvokeResult, invoke, invoke_client
from tasks.smoke_check import check_invoke

MAX_CONCURRENT = 8
T = TypeVar("T")


class SmokeOutcome(BaseModel):
    """One smoke invoke: its gate result plus what the function answered and where it ran."""

    model_config = ConfigDict(frozen=True)

    case: str
    function: str
    function_name: str
    qualifier: str
    result: GateResult
    payload: dict[str, Any] | None = None
    executed_version: str | None = None
    log_tail: str = ""
    # The RequestId of the invocation's START/END/REPORT lines: the log scan's key.
    request_id: str | None = None
    # Wall clock (epoch seconds) of the invoke, so invokes of concurrent threads compare.
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        """Whether every check of this invoke held."""
        return self.result.status is Status.PASSED


def smoke_invoke(
    config: DeployConfig,
    case: SmokeCase,
    qualifier: str,
    correlation_id: str,
    *,
    expect_version: str | None = None,
    lam: Any = None,
) -> SmokeOutcome:
    """Invoke the case's function at qualifier (version or alias) and validate its response.

    A numeric qualifier is also the version that must execute; for an alias pass expect_version.
    """
    started = time.monotonic()
    if expect_version is None and qualifier.isdigit():
        expect_version = qualifier
    event = json.dumps(substitute(case.event, correlation_id)).encode()
    result = invoke(config, case.function, qualifier, event, lam=lam)
    checks = check_invoke(case, result, correlation_id, expect_version)
    return _outcome(config, case, result, checks, time.monotonic() - started)


def _outcome(
    config: DeployConfig,
    case: SmokeCase,
    invoked: InvokeResult,
    checks: list[Check],
    duration_s: float,
) -> SmokeOutcome:
    secrets = config.secret_values()
    try:
        parsed = loads(invoked.payload) if invoked.payload else None
    except ValueError:
        parsed = None
    result = GateResult(
        gate=f"smoke: {case.name}",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=tuple(scrub(c, secrets) for c in checks),
        duration_s=duration_s,
    )
    return SmokeOutcome(
        case=case.name,
        function=case.function,
        function_name=invoked.function_name,
        qualifier=invoked.qualifier,
        result=result,
        payload=scrub(parsed, secrets) if isinstance(parsed, dict) else None,
        executed_version=invoked.executed_version,
        log_tail=scrub(invoked.log_tail, secrets),
        request_id=invoked.request_id,
        started_at=invoked.started_at,
        finished_at=invoked.finished_at,
    )


def run_order(cases: Sequence[SmokeCase]) -> dict[int, set[int]]:
    """For each case (by index), the earlier cases that must finish before it starts.

    The previous case of the same function, and every case its ``after`` names.
    """
    index = {case.name: i for i, case in enumerate(cases)}
    last: dict[str, int] = {}
    needs: dict[int, set[int]] = {}
    for i, case in enumerate(cases):
        needs[i] = {index[name] for name in case.after if index.get(name, i) < i}
        if case.function in last:
            needs[i].add(last[case.function])
        last[case.function] = i
    return needs


def run_cases(
    cases: Sequence[SmokeCase], run: Callable[[SmokeCase], T], max_workers: int = MAX_CONCURRENT
) -> list[T]:
    """run(case) for every case, each as soon as the cases it needs (run_order) have finished;
    the results in the declared order. An exception of run is raised; nothing more starts."""
    needs = run_order(cases)
    done: dict[int, T] = {}
    waiting = set(range(len(cases)))
    running: dict[Future[T], int] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(cases))))
    try:
        while waiting or running:
            # Submitted only once ready, so no worker ever blocks on another case.
            for i in sorted(i for i in waiting if needs[i] <= done.keys()):
                waiting.discard(i)
                running[pool.submit(run, cases[i])] = i
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    finally:
        # A step timeout interrupts the wait: start nothing more; invokes in flight are bounded.
        pool.shutdown(wait=False, cancel_futures=True)
    return [done[i] for i in range(len(cases))]


def smoke_gate(
    config: DeployConfig,
    qualifier: str | Mapping[str, str],
    correlation_id: str,
    expect_versions: Mapping[str, str] | None = None,
) -> tuple[GateResult, list[SmokeOutcome]]:
    """Run every smoke case; qualifier is one alias/version or one per function key.

    expect_versions (function key → version) names the version an alias must have run.
    Outcomes come back in the declared order.
    """
    started = time.monotonic()
    if not config.smoke:
        skipped = GateResult(
            gate="smoke",
            boundary="deployment",
            strength=Strength.CONTENT,
            skipped_reason="the service declares no smoke cases ([[smoke]] in service.toml)",
        )
        return skipped, []
    lam = invoke_client(config)

    def run(case: SmokeCase) -> SmokeOutcome:
        which = qualifier if isinstance(qualifier, str) else qualifier[case.function]
        expected = (expect_versions or {}).get(case.function)
        return smoke_invoke(config, case, which, correlation_id, expect_version=expected, lam=lam)

    outcomes = run_cases(config.smoke, run)
    checks = tuple(
        check.model_copy(update={"name": f"{outcome.case}: {check.name}"})
        for outcome in outcomes
        for check in outcome.result.checks
    )
    result = GateResult(
        gate="smoke",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=checks,
        duration_s=time.monotonic() - started,
    )
    return result, outcomes


def request_ids(outcomes: Sequence[SmokeOutcome]) -> dict[str, list[str]]:
    """Function name → the request ids of its smoke invokes that ran (declared order)."""
    found: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.request_id:
            found.setdefault(outcome.function_name, []).append(outcome.request_id)
    return found
