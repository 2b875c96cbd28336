"""The reliability fuzz (docs/reliability.md): seeded, bounded, every case with a timeout.

The fast tier draws a few dozen cases per category; the slow tier five times as many;
``benchmarks/fuzz_reliability.py`` runs thousands and prints the counts table. A failing case
prints its id: ``python benchmarks/fuzz_reliability.py --only ID`` reruns it alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.harness import (
    CATEGORIES,
    FAILURES,
    Case,
    Fixtures,
    Runner,
    failure_report,
    sample_cases,
)

SEED = 11
FAST_COUNTS = {"audio-api": 40, "model-regression": 30, "model-diffusion": 20, "model-a2e": 15,
               "options-api": 35, "options-cli": 20, "cli": 3}  # fmt: skip
SLOW_FACTOR = 5


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("fuzz")).build()


@pytest.fixture(scope="module")
def runner(fixtures: Fixtures) -> Iterator[Runner]:
    with Runner(fixtures, timeout_s=60, cli_timeout_s=150) as runner:
        yield runner


def _assert_promise_kept(runner: Runner, cases: list[Case]) -> None:
    outcomes = runner.run_all(cases)
    broken = [o for o in outcomes if o.outcome in FAILURES]
    if broken:
        pytest.fail(
            f"{len(broken)} of {len(outcomes)} fuzz cases broke the promise (rerun one with "
            f"`python benchmarks/fuzz_reliability.py --only ID`):\n{failure_report(outcomes)}",
            pytrace=False,
        )


@pytest.mark.parametrize("category", CATEGORIES)
def test_fuzz_fast(category: str, fixtures: Fixtures, runner: Runner) -> None:
    """A seeded sample of each category: typed error or valid output, no hang, no leftovers."""
    cases = sample_cases(fixtures, {category: FAST_COUNTS[category]}, SEED)
    assert len(cases) == FAST_COUNTS[category]
    _assert_promise_kept(runner, cases)


@pytest.mark.slow
@pytest.mark.parametrize("category", CATEGORIES)
def test_fuzz_slow(category: str, fixtures: Fixtures, runner: Runner) -> None:
    """Five times the fast tier's sample, drawn with another seed."""
    count = FAST_COUNTS[category] * SLOW_FACTOR
    _assert_promise_kept(runner, sample_cases(fixtures, {category: count}, SEED + 1))


def test_harness_tells_outcomes_apart(fixtures: Fixtures, runner: Runner, tmp_path: Path) -> None:
    """The harness itself: a clean clip is accepted, a missing model file is a typed error,
    an unknown precision is a typed error, and a worker that never answers is a hang."""
    clean = Case("audio-api", "clean", {
        "container": "WAV", "subtype": "PCM_16", "ext": "wav", "rate": 16000, "channels": 1,
        "mutation": "none"})  # fmt: skip
    missing = Case("model-regression", "missing", {
        "kind": "regression", "file": "network_info.json", "mutation": "delete",
        "scope": "file"})  # fmt: skip
    unknown = Case("options-api", "unknown", {
        "target": "field", "field": "precision", "value": "str"})  # fmt: skip
    outcomes = [runner.run(case).outcome for case in (clean, missing, unknown)]
    assert outcomes == ["accepted", "typed", "typed"]
    impatient = Runner(fixtures, timeout_s=0.001)
    try:
        assert impatient.run(clean).outcome == "hang"
    finally:
        impatient.close()
