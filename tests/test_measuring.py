"""ccp.timing and ccp.memory, the one home of every measurement's clock and memory reads."""

from __future__ import annotations

import gc
import time

import numpy as np

from ccp import memory, timing


def test_time_calls_times_each_call_after_untimed_warm_up():
    calls = []

    def call(argument):
        calls.append(argument)
        if len(calls) > 3:  # the warm-up calls are fast; only the timed ones sleep
            time.sleep(0.002)

    seconds = timing.time_calls(call, "x", repeats=5, warmup=3)
    assert len(calls) == 8 and set(calls) == {"x"}
    assert seconds.shape == (5,) and seconds.min() >= 0.002


def test_stopwatch_tells_waiting_from_working():
    with timing.Stopwatch() as asleep:
        time.sleep(0.05)
    with timing.Stopwatch() as busy:
        until = time.perf_counter() + 0.05
        while time.perf_counter() < until:
            pass
    assert asleep.wall_s >= 0.05 and asleep.cpu_s < 0.04
    assert busy.wall_s >= 0.05 and busy.cpu_s > 0.0


def test_paused_gc_restores_the_collector_as_it_was():
    assert gc.isenabled()
    with timing.paused_gc(collect=False):
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with timing.paused_gc(collect=False):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_summary_uses_linear_percentiles_in_milliseconds():
    summary = timing.summary_ms(np.arange(1, 101) / 1e3)  # 1..100 ms
    assert summary == {"p50_ms": 50.5, "p99_ms": 99.01, "mean_ms": 50.5, "min_ms": 1.0}


def test_robust_s_keeps_the_fastest_clean_sample():
    assert timing.robust_s([(0.1, False), (0.3, True), (0.2, True)]) == 0.2
    assert timing.robust_s([(0.1, False), (0.3, False)]) == 0.1


def test_sampler_sees_anonymous_memory_grow_and_peak_rss_covers_it():
    sampler = memory.Sampler("RssAnon", every_s=0.01)
    start_kib = sampler.samples[0][1]
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    time.sleep(0.05)
    peak_kib = sampler.stop()
    del block
    assert peak_kib - start_kib > 150 * 2**10
    assert len(sampler.samples) >= 3 and sampler.samples == sorted(sampler.samples)
    assert memory.peak_rss_bytes() >= peak_kib * 1024
    assert memory.status_kib("NoSuchField") == 0
