"""The smoke gate's run order, without AWS: which cases may overlap and which may not.

The run function here only records when it ran; the same order is proven on the stack, with real
invokes, in test_post_deploy_gates.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gangway.config import SmokeCase
from tasks.smoke import run_cases, run_order


@dataclass(frozen=True)
class Ran:
    name: str
    began: float
    ended: float
    thread: str


def case(name: str, function: str, after: tuple[str, ...] = ()) -> SmokeCase:
    return SmokeCase(name=name, function=function, after=after)


def recorder(hold_s: dict[str, float]) -> Callable[[SmokeCase], Ran]:
    def run(c: SmokeCase) -> Ran:
        began = time.monotonic()
        time.sleep(hold_s.get(c.name, 0.05))
        return Ran(c.name, began, time.monotonic(), threading.current_thread().name)

    return run


def overlap(a: Ran, b: Ran) -> bool:
    return a.began < b.ended and b.began < a.ended


def test_run_order_chains_a_function_and_honours_after() -> None:
    cases = [
        case("w", "worker"),
        case("a", "api", after=("w",)),
        case("t1", "ticker"),
        case("t2", "ticker"),
        case("q", "query"),
        case("t3", "ticker"),
    ]
    assert run_order(cases) == {0: set(), 1: {0}, 2: set(), 3: {2}, 4: set(), 5: {3}}


def test_different_functions_overlap_and_results_keep_the_declared_order() -> None:
    cases = [case("slow", "f1"), case("mid", "f2"), case("fast", "f3")]
    # The first case finishes last: the results must still come back in the declared order.
    ran = run_cases(cases, recorder({"slow": 0.4, "mid": 0.2, "fast": 0.05}))
    assert [r.name for r in ran] == ["slow", "mid", "fast"]
    assert ran[2].ended < ran[1].ended < ran[0].ended
    assert overlap(ran[0], ran[1]) and overlap(ran[0], ran[2])
    assert len({r.thread for r in ran}) == 3


def test_cases_of_one_function_and_after_never_overlap() -> None:
    cases = [
        case("w", "worker"),
        case("t1", "ticker"),
        case("a", "api", after=("w",)),
        case("t2", "ticker"),
        case("t3", "ticker"),
    ]
    # t1 is slow: t2 and t3 still wait for it, while w and a go ahead.
    ran = {r.name: r for r in run_cases(cases, recorder({"t1": 0.3, "w": 0.1}))}
    assert ran["t1"].ended <= ran["t2"].began and ran["t2"].ended <= ran["t3"].began
    assert ran["w"].ended <= ran["a"].began
    assert overlap(ran["w"], ran["t1"]) and overlap(ran["a"], ran["t1"])


def test_at_most_max_workers_run_at_once() -> None:
    cases = [case(f"c{i}", f"f{i}") for i in range(12)]
    lock, now, peak = threading.Lock(), [0], [0]

    def run(c: SmokeCase) -> str:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return c.name

    assert run_cases(cases, run, max_workers=8) == [c.name for c in cases]
    assert peak[0] == 8
