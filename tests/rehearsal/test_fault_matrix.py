"""The matrix's arithmetic cannot overstate: a row counts only when everything about it held."""

from __future__ import annotations

from pathlib import Path

import pytest

from rehearsal import fault_matrix
from rehearsal.fault_matrix import FaultRow, Sweep

PASSED = ("passed", "")


def verdict_row(test: str, **update: object) -> FaultRow:
    row = FaultRow(
        fault=f"fault {test}",
        group="g",
        boundary="aws",
        caught_at="smoke",
        outcome="rolled back",
        alias_after="v3",
        ledger="rolled-back 1234",
        seconds=1.0,
        contained=True,
        record_consistent=True,
        test=test,
    )
    return row.model_copy(update=update)


def settle(pending: FaultRow | None, **phases: tuple[str, str]) -> FaultRow:
    return fault_matrix.settle(
        pending,
        {"setup": PASSED, "call": PASSED, "teardown": PASSED, **phases},
        fault="f",
        group="g",
        test=pending.test if pending else "t",
    )


def good_sweep() -> Sweep:
    return Sweep(scanned={"ledger records": 3}, found=[], controls_planted=4, controls_found=4)


def test_an_assertion_failing_after_the_verdict_makes_the_row_not_contained() -> None:
    row = settle(verdict_row("t1"), call=("failed", "assert 1 == 2"))
    assert not row.contained and row.ran
    assert "call failed: assert 1 == 2" in row.outcome


def test_a_failing_teardown_makes_the_row_not_contained() -> None:
    assert not settle(verdict_row("t1"), teardown=("failed", "restore failed")).contained


def test_a_skipped_row_did_not_run_and_is_not_contained() -> None:
    row = fault_matrix.settle(
        None,
        {"setup": ("skipped", "no docker"), "teardown": PASSED},
        fault="f",
        group="g",
        test="t",
    )
    assert not row.contained and not row.ran and "skipped" in row.outcome


def test_a_verdict_with_problems_or_stranded_traffic_is_never_contained() -> None:
    # The verdict sets contained from its own checks; settle can only take it away.
    assert not settle(verdict_row("t1", contained=False, problems=["leak"])).contained
    stranded = settle(verdict_row("t1", contained=False, stranded_s=120.5))
    assert stranded.stranded and not stranded.contained
    failing = settle(verdict_row("t1", contained=False, stranded_s=100.0), call=("failed", "x"))
    assert not failing.stranded and not failing.contained  # not a softer name for a failure
    assert settle(verdict_row("t1")).contained


def test_result_counts_declared_rows_that_never_wrote_one() -> None:
    declared = {"t1": "a", "t2": "b", "t3": "c"}
    rows = [settle(verdict_row("t1")), settle(verdict_row("t2", contained=False, stranded_s=93.0))]
    figures = fault_matrix.result(declared, rows, good_sweep())
    assert figures["faults"] == 3 and figures["ran"] == 2
    assert figures["contained"] == 1 and figures["stranded"] == 1
    assert figures["stranded_s_median"] == figures["stranded_s_max"] == 93.0
    assert figures["lost_records"] == 1  # the missing row cannot vouch for its record
    assert figures["valid"] is False and not fault_matrix.clean(figures)


def test_result_is_invalid_without_a_sweep_or_with_a_missed_control() -> None:
    declared = {"t1": "a"}
    rows = [settle(verdict_row("t1"))]
    no_sweep = fault_matrix.result(declared, rows, None)
    assert no_sweep["secrets_found"] is None and no_sweep["valid"] is False
    missed = good_sweep().model_copy(update={"controls_found": 3})
    assert fault_matrix.result(declared, rows, missed)["valid"] is False
    figures = fault_matrix.result(declared, rows, good_sweep())
    assert figures["valid"] is True and fault_matrix.clean(figures)
    leaked = good_sweep().model_copy(update={"found": ["prefect logs[3]"]})
    assert not fault_matrix.clean(fault_matrix.result(declared, rows, leaked))


def test_declare_starts_a_new_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANGWAY_FAULTS_DIR", str(tmp_path / "faults"))
    fault_matrix.declare({"t1": "a"})
    fault_matrix.append(settle(verdict_row("t1")))
    fault_matrix.save_sweep(good_sweep())
    fault_matrix.declare({"t1": "a", "t2": "b"})
    assert fault_matrix.load() == [] and fault_matrix.load_sweep() is None
    assert fault_matrix.declared() == {"t1": "a", "t2": "b"}
    table = fault_matrix.render_table(fault_matrix.complete(fault_matrix.declared(), []))
    assert table.count("NOT CONTAINED: did not run") == 2


def test_kill_rows_restored_within_the_limit_are_contained_and_still_reported() -> None:
    limit = fault_matrix.STRANDED_LIMIT_S
    declared = {"t1": "a", "t2": "b", "t3": "c", "t4": "d"}
    rows = [
        settle(verdict_row("t1")),  # never left traffic moved
        settle(verdict_row("t2", stranded_s=20.0)),
        settle(verdict_row("t3", stranded_s=40.0)),
        settle(verdict_row("t4", stranded_s=limit)),  # the limit itself still counts
    ]
    assert not any(r.stranded for r in rows) and all(r.contained for r in rows)
    figures = fault_matrix.result(declared, rows, good_sweep())
    assert figures["stranded"] == 0 and figures["contained"] == 4
    assert figures["stranded_s_median"] == 40.0 and figures["stranded_s_max"] == limit
    assert '"stranded": 0' in fault_matrix.result_line(declared, rows, good_sweep())
    assert fault_matrix.clean(figures)


def test_a_row_stranded_beyond_the_limit_is_not_clean() -> None:
    declared = {"t1": "a"}
    row = settle(verdict_row("t1", contained=False, stranded_s=fault_matrix.STRANDED_LIMIT_S + 1))
    assert row.stranded and not row.contained
    assert "STRANDED" in fault_matrix.render_table([row])
    assert fault_matrix.stranded_names([row]) == [f"fault t1 ({row.stranded_s:.1f}s)"]
    figures = fault_matrix.result(declared, [row], good_sweep())
    assert figures["stranded"] == 1 and not fault_matrix.clean(figures)
    no_kill = fault_matrix.result(declared, [settle(verdict_row("t1"))], good_sweep())
    assert no_kill["stranded_s_median"] is None and no_kill["stranded_s_max"] is None
