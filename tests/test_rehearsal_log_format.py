"""Lambda's platform lines from the bridge's measurements (rehearsal/log_format.py), pure."""

from __future__ import annotations

import json

from rehearsal.log_format import Measured, rewrite

RID = "0f0e0d0c-0b0a-4909-8807-060504030201"
RIE_LINES = [
    f"START RequestId: {RID} Version: 3",
    "app line",
    f"END RequestId: {RID}",
    f"REPORT RequestId: {RID}\tInit Duration: 0.11 ms\tDuration: 282.36 ms\t"
    "Billed Duration: 283 ms\tMemory Size: 3008 MB\tMax Memory Used: 3008 MB\t",
]
COLD = Measured(duration_ms=2.27, memory_size_mb=512, max_memory_used_mb=229, init_ms=148.28)
WARM = Measured(duration_ms=1.5, memory_size_mb=512, max_memory_used_mb=230, init_ms=None)


def test_text_report_has_the_measured_figures_and_init_only_when_cold() -> None:
    cold = rewrite(RIE_LINES, COLD, json_format=False)
    warm = rewrite(RIE_LINES, WARM, json_format=False)
    assert cold[:3] == RIE_LINES[:3]
    assert cold[3] == (
        f"REPORT RequestId: {RID}\tDuration: 2.27 ms\tBilled Duration: 151 ms\t"
        "Memory Size: 512 MB\tMax Memory Used: 229 MB\tInit Duration: 148.28 ms\t"
    )
    assert "Init Duration" not in warm[3] and "Billed Duration: 2 ms" in warm[3]


def test_status_and_error_type_are_kept() -> None:
    lines = [f"REPORT RequestId: {RID}\tStatus: error\tError Type: Runtime.ExitError"]
    out = rewrite(lines, WARM, json_format=False)[0]
    assert out.endswith("Max Memory Used: 230 MB\tStatus: error\tError Type: Runtime.ExitError\t")
    timed_out = Measured(1000.0, 512, 40, None, status="timeout")
    assert "\tStatus: timeout\t" in rewrite(RIE_LINES, timed_out, json_format=False)[3]


def test_json_format_gives_platform_records_and_keeps_application_lines() -> None:
    out = rewrite(RIE_LINES, COLD, json_format=True)
    assert out[1] == "app line"
    records = [json.loads(line) for line in out if line.startswith("{")]
    assert [r["type"] for r in records] == [
        "platform.start", "platform.runtimeDone", "platform.report"
    ]
    assert records[0]["record"] == {"requestId": RID, "version": "3"}
    assert records[2]["record"] == {
        "requestId": RID,
        "metrics": {
            "durationMs": 2.27, "billedDurationMs": 151, "memorySizeMB": 512,
            "maxMemoryUsedMB": 229, "initDurationMs": 148.28,
        },
        "status": "success",
    }
    warm = json.loads(rewrite(RIE_LINES, WARM, json_format=True)[-1])
    assert "initDurationMs" not in warm["record"]["metrics"]
