"""pytest-benchmark suite of the gated serving paths, run by hand (marked slow).

    pytest tests/benchmarks -m slow --benchmark-json reports/bench-latency.json
    pytest tests/benchmarks -m slow --benchmark-autosave             # keep a run to compare
    pytest tests/benchmarks -m slow --benchmark-compare --benchmark-compare-fail=min:30%

What pytest-benchmark lacks on a noisy shared machine, added here: every result carries, in
`extra_info`, its ratio to the gate's reference kernel timed in the same session (the figure
`python -m bench latency --check` compares), so two saved runs from differently loaded
machines can be compared by ratio rather than by milliseconds.
"""

from __future__ import annotations

import pytest

from bench import latency_gate as gate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def entries():
    built, _ = gate.build_entries(progress=False)
    return {entry.key: entry for entry in built}


@pytest.fixture(scope="module")
def reference_s():
    from bench.latency import pinned_threads

    with pinned_threads(gate.THREADS):
        calls = gate.calls_per_sample(gate.reference_kernel)
        return gate.robust_s([gate.sample_s(gate.reference_kernel, calls) for _ in range(50)])


def _keys():
    # The keys are known without fitting: one per gated model, path and N, plus assembly.
    keys = [f"assembly|-|{n}" for n in gate.CANDIDATES]
    for gated in gate.GATED:
        keys += [f"{gated.pattern}|{path}|{n}" for path in gated.paths for n in gate.CANDIDATES]
    return keys


def test_reference_kernel(benchmark):
    from bench.latency import pinned_threads

    with pinned_threads(gate.THREADS):
        benchmark(gate.reference_kernel)


@pytest.mark.parametrize("key", _keys())
def test_serving_path(key, entries, reference_s, benchmark):
    if key not in entries:
        pytest.skip(f"{key}: model or path not available here")
    from bench.latency import pinned_threads

    benchmark.group = f"N={key.rsplit('|', 1)[1]}"
    with pinned_threads(gate.THREADS):
        benchmark.pedantic(entries[key].call, rounds=30, iterations=1, warmup_rounds=3)
    benchmark.extra_info["reference_ms"] = reference_s * 1e3
    benchmark.extra_info["ratio_to_reference_min"] = benchmark.stats.stats.min / reference_s
    benchmark.extra_info["ratio_to_reference_median"] = (benchmark.stats.stats.median
                                                         / reference_s)
