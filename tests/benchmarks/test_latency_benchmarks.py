"""pytest-benchmark suite of the gated serving paths, run by hand (marked slow).

    pytest tests/benchmarks -m slow --benchmark-json reports/bench-latency.json
    pytest tests/benchmarks -m slow --benchmark-autosave             # keep a run to compare
    pytest tests/benchmarks -m slow --benchmark-compare --benchmark-compare-fail=min:30%

What pytest-benchmark lacks on a noisy shared machine, added here: every result carries, in
`extra_info`, its ratio to the gate's reference kernel timed in the same session (the figure
`python -m bench latency --check` compares), so two saved runs from differently loaded
machines can be compared by ratio rather than by milliseconds.

It is a check as well as a measurement: every gated path must score the gate's request as the
model's library path does (max abs difference <= 1e-5 on every output), every gated entry must
be built (an entry is left out only when its optional library is missing, and says so), and
every benchmark must have run its rounds with positive times.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import latency_gate as gate

ROUNDS = 30

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built():
    return gate.build_entries(progress=False)


@pytest.fixture(scope="module")
def entries(built):
    return {entry.key: entry for entry in built[0]}


@pytest.fixture(scope="module")
def reference_s():
    from ccp.timing import calls_per_sample, pinned_threads, robust_s, sample_s

    with pinned_threads(gate.THREADS):
        calls = calls_per_sample(gate.reference_kernel)
        return robust_s([sample_s(gate.reference_kernel, calls) for _ in range(50)])


def _keys():
    # The keys are known without fitting: one per gated model, path and N, plus assembly.
    keys = [f"assembly|-|{n}" for n in gate.CANDIDATES]
    for gated in gate.GATED:
        keys += [f"{gated.pattern}|{path}|{n}" for path in gated.paths for n in gate.CANDIDATES]
    return keys


def test_reference_kernel(benchmark):
    from ccp.timing import pinned_threads

    with pinned_threads(gate.THREADS):
        benchmark(gate.reference_kernel)
    _assert_ran(benchmark, None)


def _assert_ran(benchmark, rounds):
    stats = benchmark.stats.stats
    assert stats.rounds == (rounds or stats.rounds) and stats.rounds >= 1
    assert 0 < stats.min <= stats.median <= stats.max


def test_every_gated_entry_is_built_or_said_to_be_unavailable(built):
    keys = {entry.key for entry in built[0]}
    unavailable = {note.split(": ")[0] for note in built[1] if note.endswith("not available")}
    for key in _keys():
        model, path, _ = key.split("|")
        assert key in keys or f"{model} {path}" in unavailable, key


@pytest.mark.parametrize("key", [k for k in _keys() if k.split("|")[1] not in ("library", "-")])
def test_every_gated_path_scores_like_the_library(key, entries):
    if key not in entries:
        pytest.skip(f"{key}: model or path not available here")
    model, _, n = key.split("|")
    from bench.latency import max_abs_diff
    from ccp.timing import pinned_threads

    with pinned_threads(gate.THREADS):
        path, library = entries[key].call(), entries[f"{model}|library|{n}"].call()
    assert len(library["ctr"]) == int(n)
    assert max_abs_diff(path, library) <= 1e-5
    assert all(np.all(np.isfinite(path[k])) for k in ("ctr", "cvr", "ctcvr"))


@pytest.mark.parametrize("key", _keys())
def test_serving_path(key, entries, reference_s, benchmark):
    if key not in entries:
        pytest.skip(f"{key}: model or path not available here")
    from ccp.timing import pinned_threads

    benchmark.group = f"N={key.rsplit('|', 1)[1]}"
    with pinned_threads(gate.THREADS):
        benchmark.pedantic(entries[key].call, rounds=ROUNDS, iterations=1, warmup_rounds=3)
    _assert_ran(benchmark, ROUNDS)
    benchmark.extra_info["reference_ms"] = reference_s * 1e3
    benchmark.extra_info["ratio_to_reference_min"] = benchmark.stats.stats.min / reference_s
    benchmark.extra_info["ratio_to_reference_median"] = (benchmark.stats.stats.median
                                                         / reference_s)
