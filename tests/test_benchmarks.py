"""The benchmark scripts keep working: every measured operation runs and succeeds.

Speed itself is never asserted here; ``python benchmarks/run.py`` reports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import against  # type: ignore[import-not-found]  # noqa: E402
import instructions  # type: ignore[import-not-found]  # noqa: E402
import run  # type: ignore[import-not-found]  # noqa: E402


def test_every_benchmarked_operation_runs() -> None:
    fns, size = run.ours(5)
    fns |= run.ours_third_party()
    assert size > 100
    for fn in fns.values():
        fn()  # raises if a check fails: the benchmark must measure successes
    assert {"full check", "cached full check", "floor", "floor, our HMAC"} <= set(fns)


def test_the_pymacaroons_peer_verifies_its_tokens() -> None:
    peer = run.pymacaroons_case(5) | run.pymacaroons_third_party()
    assert len(peer) == 3  # pymacaroons is installed with the test extra
    for fn in peer.values():
        fn()


def test_measure_all_gives_a_median_per_function() -> None:
    result = run.measure_all({"a": lambda: None, "b": lambda: sum(range(100))}, 0.01)
    assert set(result) == {"a", "b"}
    assert all(value > 0 for value in result.values())


def test_instruction_counting_operations_run() -> None:
    for fn in instructions.operations(1).values():
        fn()


def test_against_reads_every_target_run_prints() -> None:
    ratios = {(n, kind): 1.0 + n / 100 for n in (1, 5, 20) for kind, _ in run.WORKLOAD_ROWS}
    lines = run.targets(ratios, {1: 0.1, 5: 0.15, 20: 0.25})
    found = against.TARGET.findall("\n".join(f"- {line}" for line in lines))
    assert len(found) == len(lines) == 12
    assert ("N=20 cached / uncached <= 0.20", "0.25", "MISSED") in found
    assert ("N=5 unique caveats <= 1.3x", "1.05", "held") in found
