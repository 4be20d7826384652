"""Per-invoke log evidence and headroom: faults that only the new version's own log lines show.

- CloudWatch Logs delivers late: every smoke invoke's START, END and REPORT must be found
  within environment.deploy.log_ingestion_s. Lines 5 s late (the rehearsal bridge delays
  delivery, rehearsal/fidelity.py log_delay_s) are inside the window: the deploy passes.
  Lines that never come are a trigger: rolled back, the evidence naming each request and
  the lines missing.
- Headroom (the intentional layer): a handler that answers correctly but uses 85 % of its
  timeout, or 94 % of its memory, passes every other gate; the REPORT lines show it, and
  the log scan rolls it back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gangway.record import DeployRecord
from rehearsal import fidelity

from .conftest import FAULTS_ENV, FaultRun, append_python

pytestmark = pytest.mark.stack

DEPLOY = "GANGWAY_ENVIRONMENT__DEPLOY__"
# line_webhook: timeout 10 s, memory 256 MB (deployments/service.toml).
WEBHOOK = "line_webhook"

# 85 % of the 10 s timeout: above the 80 % headroom (8 s), 1.5 s below the timeout itself.
SLOW = """
    import time as _gw_time

    _gw_original = handle_webhook

    def handle_webhook(event, context):
        # Correct answer, but 8.5 s of a 10 s timeout: a slower input times out. Its own line
        # first, so the log scan's other checks hold and only the headroom can fail.
        log.info("webhook: answering after 8.5 s (variant)")
        _gw_time.sleep(8.5)
        return _gw_original(event, context)
"""

# About 94 % of the memory size at the peak: above the 90 % headroom, below the limit (the
# container is not killed). The allocation is sized from what the sandbox already holds.
HUNGRY = """
    import os as _gw_os

    _gw_original = handle_webhook

    def _gw_in_use():
        # What Max Memory Used measures here: the sandbox's cgroup (v2, then v1), else RSS.
        for path in ("/sys/fs/cgroup/memory.current",
                     "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
            try:
                with open(path) as current:
                    return int(current.read())
            except (OSError, ValueError):
                continue
        with open("/proc/self/status") as status:
            line = next(s for s in status if s.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def handle_webhook(event, context):
        size = int(_gw_os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) * 1024 * 1024
        # Filled with ones, so every page is really committed (zeros may stay untouched).
        held = b"\\x01" * max(0, int(size * 0.94) - _gw_in_use())
        try:
            return _gw_original(event, context)
        finally:
            del held
"""


def prefix(fault: FaultRun) -> str:
    """The name prefix of this environment's functions (the fidelity override's scope)."""
    return f"{fault.config.service.name}-{FAULTS_ENV}-"


def scan_checks(record: DeployRecord) -> dict[str, dict]:
    """The log scan gate's checks in the record, by name."""
    scan = next(g for g in record.gates if g.gate == "log scan")
    return {c.name: c.model_dump() for c in scan.checks}


@pytest.mark.fault(
    "log lines delivered 5 s late (inside the ingestion window)", group="observability"
)
def test_late_log_lines_inside_the_window_pass(fault: FaultRun, new_image: None) -> None:
    window = fault.config.environment.deploy.log_ingestion_s
    assert window > 5, f"the ingestion window ({window} s) must outlast the 5 s delay"
    with fidelity.override(prefix(fault), log_delay_s=5.0, log_jitter_s=0.0):
        attempt = fault.deploy()
    record = fault.recovered(
        attempt,
        caught_at="log scan (waited for late lines)",
        boundary="observability",
        evidence="every smoke invoke's START/END/REPORT found after a 5 s delivery delay",
    )
    checks = scan_checks(record)
    invocations = {n: c for n, c in checks.items() if ": invocation " in n}
    assert len(invocations) == len(fault.config.smoke), sorted(checks)
    for name, check in invocations.items():
        assert check["ok"] and check["evidence"]["lines"] == ["START", "END", "REPORT"], name
    # The lines were really late: the scan had to wait for them (it returns as soon as
    # all are in, so its recorded length is the delay it met, not a fixed wait).
    step = next(s for s in record.steps if s.name == "log scan")
    assert step.seconds >= 3, step


@pytest.mark.fault("log lines never delivered (past the ingestion window)", group="observability")
def test_log_lines_that_never_arrive_roll_back(
    fault: FaultRun, new_image: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never is never: a 10 s window (instead of AWS's default 30 s) keeps the row short.
    monkeypatch.setenv(DEPLOY + "LOG_INGESTION_S", "10")
    with fidelity.override(prefix(fault), log_delay_s=3600.0, log_jitter_s=0.0):
        attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="log scan",
        boundary="observability",
        says=("START, END and REPORT", "no line of this request after waiting 10 s"),
    )
    failed = [c for c in record.trigger["checks"] if ": invocation " in c["name"]]
    assert len(failed) == len(fault.config.smoke), record.trigger["checks"]
    for check in failed:
        request = check["evidence"]["request_id"]
        assert request and request in check["name"] and request in check["expected"]
        assert check["evidence"]["missing"] == ["START", "END", "REPORT"], check
        assert "log_ingestion_s" in check["remedy"]


@pytest.mark.fault("a handler using 85 % of its timeout (duration headroom)", group="observability")
def test_duration_over_the_headroom_rolls_back(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    variant(append_python(WEBHOOK, SLOW))
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt, step="log scan", boundary="observability", says=("duration headroom",)
    )
    smoke = next(g for g in record.gates if g.gate == "smoke")
    assert smoke.status.value == "passed", "every response was right, and in time"
    [check] = record.trigger["checks"]
    name = fault.config.functions[WEBHOOK].name
    assert check["name"] == f"headroom: {name}: duration headroom", check["name"]
    evidence = check["evidence"]
    assert evidence["limit_ms"] == 8000 and evidence["bound"] == "timeout"
    assert 8000 < evidence["observed_ms"] < 10_000, evidence
    assert evidence["worst_request"] in evidence["requests"]


@pytest.mark.fault("a handler using 94 % of its memory (memory headroom)", group="observability")
def test_memory_over_the_headroom_rolls_back(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    variant(append_python(WEBHOOK, HUNGRY))
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt, step="log scan", boundary="observability", says=("memory headroom",)
    )
    smoke = next(g for g in record.gates if g.gate == "smoke")
    assert smoke.status.value == "passed", "the function was not killed: it answered"
    [check] = record.trigger["checks"]
    name = fault.config.functions[WEBHOOK].name
    assert check["name"] == f"headroom: {name}: memory headroom", check["name"]
    evidence = check["evidence"]
    assert evidence["memory_mb"] == 256 and evidence["limit_mb"] == pytest.approx(230.4)
    assert 230.4 < evidence["observed_mb"] <= 256, evidence
