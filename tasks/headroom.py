"""Headroom, the intentional layer: did the invokes stay well inside what the function is
allowed, not merely inside it?

Pure deciding, no AWS: the log scan and the bake's count read the REPORT lines
(tasks/report_lines.py); this module judges them per function against thresholds from
environment.deploy (with per-function overrides in [functions.X]):

- duration: the largest observed ``Duration`` ≤ min(duration_headroom * timeout,
  client_deadline_headroom * client_deadline_s when the function declares one);
- memory: the largest ``Max Memory Used`` ≤ memory_headroom * memory size;
- timeouts: a ``Status: timeout`` always fails.

``Init Duration`` is left out of the compared duration: Lambda's timeout bounds the invoke
phase that ``Duration`` measures, while the init phase (a cold start's) runs under its own
limit of 10 s before it; a cold start is also rare on a warm function, so one would make a
healthy function look slow. It is kept in the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gangway.config import DeployConfig, ResolvedFunction
from gangway.evidence import Check, GateResult, Strength
from tasks.report_lines import Report


@dataclass(frozen=True)
class Limits:
    """One function's allowances and the shares of them its invokes may use."""

    timeout_ms: int
    memory_mb: int
    duration_headroom: float
    memory_headroom: float
    client_deadline_s: float | None = None
    client_deadline_headroom: float = 0.8
    # Where each threshold came from, for the evidence (a key a user can set).
    source: str = "environment.deploy"

    @property
    def duration_limit_ms(self) -> float:
        """The longest Duration allowed: the tighter of the timeout's and the deadline's share."""
        return min(self._bounds().values())

    @property
    def duration_bound(self) -> str:
        """Which allowance sets the duration limit: 'timeout' or 'client deadline'."""
        bounds = self._bounds()
        return min(bounds, key=lambda name: bounds[name])

    @property
    def memory_limit_mb(self) -> float:
        """The largest Max Memory Used allowed."""
        return self.memory_headroom * self.memory_mb

    def _bounds(self) -> dict[str, float]:
        bounds = {"timeout": self.duration_headroom * self.timeout_ms}
        if self.client_deadline_s is not None:
            bounds["client deadline"] = (
                self.client_deadline_headroom * self.client_deadline_s * 1000
            )
        return bounds

    def describe_duration(self) -> str:
        """The duration limit in words, with the arithmetic."""
        words = f"{self.duration_headroom:.0%} of the {self.timeout_ms / 1000:g} s timeout"
        if self.client_deadline_s is not None:
            words += (
                f", and {self.client_deadline_headroom:.0%} of the "
                f"{self.client_deadline_s:g} s client deadline"
            )
        return f"{self.duration_limit_ms:.0f} ms ({words})"


def function_of(config: DeployConfig, function_name: str) -> ResolvedFunction | None:
    """The configured function deployed as function_name, if any."""
    return next((f for f in config.functions.values() if f.name == function_name), None)


def limits_for(
    config: DeployConfig,
    function_name: str,
    timeout_ms: int | None = None,
    memory_mb: int | None = None,
) -> Limits:
    """The function's limits: timeout and memory as the version is configured (read from AWS;
    the configuration's when not read), thresholds from environment.deploy unless the
    function overrides them."""
    policy = config.environment.deploy
    fn = function_of(config, function_name)
    spec = fn.spec if fn else None
    overridden = [
        name
        for name in ("duration_headroom", "memory_headroom", "client_deadline_headroom")
        if spec is not None and getattr(spec, name) is not None
    ]
    return Limits(
        timeout_ms=timeout_ms or (spec.timeout * 1000 if spec else 3000),
        memory_mb=memory_mb or (spec.memory if spec else 128),
        duration_headroom=_pick(
            spec.duration_headroom if spec else None, policy.duration_headroom
        ),
        memory_headroom=_pick(spec.memory_headroom if spec else None, policy.memory_headroom),
        client_deadline_s=spec.client_deadline_s if spec else None,
        client_deadline_headroom=_pick(
            spec.client_deadline_headroom if spec else None, policy.client_deadline_headroom
        ),
        source="environment.deploy"
        + (f"; functions.{fn.key}: {', '.join(overridden)}" if fn and overridden else ""),
    )


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


def judge(
    function_name: str,
    limits: Limits,
    reports: Mapping[str, Report],
    *,
    what: str = "smoke invokes",
    required: bool = True,
) -> GateResult:
    """The headroom gate of one function over the REPORTs of its invokes (request id →
    report). required: no REPORT at all fails (the smoke's invokes must have them); else it
    passes with nothing judged (a bake window the new version served no invoke in)."""
    timed = {r: rep for r, rep in reports.items() if rep.duration_ms is not None}
    sized = {r: rep for r, rep in reports.items() if rep.max_memory_used_mb is not None}
    timeouts = sorted(r for r, rep in reports.items() if rep.timed_out)
    ids = sorted(reports)
    inits = [rep.init_duration_ms for rep in reports.values() if rep.init_duration_ms]
    common = {
        "requests": ids,
        "limits_from": limits.source,
        "init_duration_ms_max": max(inits) if inits else None,
    }
    checks = (
        _duration(limits, timed, what, required, common),
        _memory(limits, sized, what, required, common),
        Check(
            name="no timeouts",
            ok=not timeouts,
            expected=f"no REPORT with Status: timeout among the {what}",
            found=f"timed out: {', '.join(timeouts)}" if timeouts else f"none in {len(ids)}",
            remedy=""
            if not timeouts
            else "the handler ran into its timeout: make it faster, raise the function's "
            "timeout, or move a long job behind an asynchronous invoke",
            evidence={"timed_out": timeouts},
        ),
    )
    return GateResult(
        gate=f"headroom: {function_name}",
        boundary="observability",
        strength=Strength.OBSERVABILITY,
        checks=checks,
    )


def _worst(values: Mapping[str, float]) -> tuple[str, float]:
    request = max(values, key=lambda r: (values[r], r))
    return request, values[request]


def _duration(
    limits: Limits,
    timed: Mapping[str, Report],
    what: str,
    required: bool,
    common: dict[str, object],
) -> Check:
    expected = (
        f"the largest Duration (init excluded) among the {what} ≤ "
        f"{limits.describe_duration()}"
    )
    if not timed:
        return Check(
            name="duration headroom",
            ok=not required,
            expected=expected,
            found=f"no REPORT with a Duration among the {what}",
            remedy="the log scan found no REPORT to measure: see its per-invocation checks"
            if required
            else "",
            evidence={**common, "limit_ms": limits.duration_limit_ms},
        )
    worst, observed = _worst({r: rep.duration_ms or 0.0 for r, rep in timed.items()})
    ok = observed <= limits.duration_limit_ms
    bound = limits.duration_bound
    remedy = ""
    if not ok and bound == "client deadline":
        remedy = (
            f"the invoke took {observed:.0f} ms, close to its caller's "
            f"{limits.client_deadline_s:g} s deadline (functions.<key>.client_deadline_s): "
            "the caller gives up before the answer; make the handler faster or move the "
            "work behind an asynchronous invoke"
        )
    elif not ok:
        remedy = (
            f"the invoke used {observed / limits.timeout_ms:.0%} of the "
            f"{limits.timeout_ms / 1000:g} s timeout: a slower input times it out; make "
            "the handler faster or raise the function's timeout (or "
            "environment.deploy.duration_headroom / functions.<key>.duration_headroom if "
            "this margin is intended)"
        )
    return Check(
        name="duration headroom",
        ok=ok,
        expected=expected,
        found=f"max {observed:.0f} ms (request {worst}) over {len(timed)} invokes; limit "
        f"{limits.duration_limit_ms:.0f} ms set by the {bound}",
        remedy=remedy,
        evidence={
            **common,
            "observed_ms": observed,
            "limit_ms": limits.duration_limit_ms,
            "bound": bound,
            "timeout_ms": limits.timeout_ms,
            "client_deadline_s": limits.client_deadline_s,
            "worst_request": worst,
            "worst_line": timed[worst].line,
            "log_format": timed[worst].format,
        },
    )


def _memory(
    limits: Limits,
    sized: Mapping[str, Report],
    what: str,
    required: bool,
    common: dict[str, object],
) -> Check:
    expected = (
        f"Max Memory Used ≤ {limits.memory_limit_mb:.0f} MB "
        f"({limits.memory_headroom:.0%} of {limits.memory_mb} MB) in every REPORT among the "
        f"{what}"
    )
    if not sized:
        return Check(
            name="memory headroom",
            ok=not required,
            expected=expected,
            found=f"no REPORT with a Max Memory Used among the {what}",
            remedy="the log scan found no REPORT to measure: see its per-invocation checks"
            if required
            else "",
            evidence={**common, "limit_mb": limits.memory_limit_mb},
        )
    worst, observed = _worst(
        {r: float(rep.max_memory_used_mb or 0) for r, rep in sized.items()}
    )
    ok = observed <= limits.memory_limit_mb
    return Check(
        name="memory headroom",
        ok=ok,
        expected=expected,
        found=f"max {observed:.0f} MB (request {worst}) over {len(sized)} invokes; limit "
        f"{limits.memory_limit_mb:.0f} MB",
        remedy=""
        if ok
        else f"the function used {observed / limits.memory_mb:.0%} of its {limits.memory_mb} "
        "MB: a larger input runs it out of memory (killed, Runtime.OutOfMemory); raise "
        "the function's memory or reduce what one invoke holds (or "
        "environment.deploy.memory_headroom / functions.<key>.memory_headroom)",
        evidence={
            **common,
            "observed_mb": observed,
            "limit_mb": limits.memory_limit_mb,
            "memory_mb": limits.memory_mb,
            "worst_request": worst,
            "worst_line": sized[worst].line,
        },
    )


def for_requests(reports: Mapping[str, Report], request_ids: Sequence[str]) -> dict[str, Report]:
    """The reports of the given request ids (the ones found)."""
    return {r: reports[r] for r in dict.fromkeys(request_ids) if r in reports}
