"""How the project times things: every measurement (fit and predict in the harness, serving
latency, the latency gate, tree predict latency, training throughput) times through here.

Imports only the standard library and numpy, so any layer may use it. What each tool times,
its warm-up, repeats and percentiles stay the tool's choice; the clock, the pause of garbage
collection, thread pinning and the summaries are the same everywhere.

- `Stopwatch`: wall and process-CPU seconds of a block (fit, predict, training steps).
- `time_calls`: each of `repeats` calls timed alone, after untimed warm-up calls.
- `calls_per_sample`, `sample_s`, `robust_s`: samples of many calls each, marked unclean when
  another process preempted them, and the fastest clean one (the latency gate).
- `paused_gc`: garbage collection off while timing, as timeit does.
- `pinned_threads`: BLAS/OpenMP pools and torch's intra-op pool held at a thread count.
- `summary_ms`: p50, p99 (linear interpolation), mean and min of seconds, in milliseconds.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from contextlib import contextmanager

import numpy as np

clock = time.perf_counter


class Stopwatch:
    """`with Stopwatch() as watch: ...`, then `watch.wall_s` and `watch.cpu_s` (this process's
    CPU time, all threads: a figure a loaded machine moves less than wall time)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = clock(), time.process_time()
        return self

    def __exit__(self, *exc) -> bool:
        self.wall_s = clock() - self._wall
        self.cpu_s = time.process_time() - self._cpu
        return False


@contextmanager
def paused_gc(collect: bool = True):
    """Garbage collection off inside (as timeit does: a collection the harness triggered is not
    the model's time); `collect` runs a full collection first."""
    if collect:
        gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_calls(call, argument, repeats: int, warmup: int) -> np.ndarray:
    """Seconds of each of `repeats` calls `call(argument)`, after `warmup` untimed ones
    (caches, lazy initialisation). Garbage collection is left as it is."""
    for _ in range(warmup):
        call(argument)
    seconds = np.empty(repeats)
    for i in range(repeats):
        started = clock()
        call(argument)
        seconds[i] = clock() - started
    return seconds


def calls_per_sample(fn, min_sample_s: float = 0.002) -> int:
    """How many calls make one timed sample last about `min_sample_s` (timer noise aside)."""
    fn()  # warm
    started = clock()
    fn()
    return max(1, int(min_sample_s / max(clock() - started, 1e-7)))


def sample_s(fn, calls: int) -> tuple[float, bool]:
    """Seconds per call over one sample, and whether the sample ran without being preempted.

    An involuntary context switch during the sample (another process took the core) marks it
    unclean; a voluntary one (a sleep, a lock, I/O) does not, so a model that waits is timed
    with its waits.
    """
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    started = clock()
    for _ in range(calls):
        fn()
    seconds = (clock() - started) / calls
    return seconds, resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw == before


def robust_s(samples: list[tuple[float, bool]]) -> float:
    """The fastest unpreempted sample (noise only adds time); the fastest of all if none."""
    clean = [s for s, ok in samples if ok]
    return min(clean) if clean else min(s for s, _ in samples)


@contextmanager
def pinned_threads(threads: int):
    """Limit BLAS/OpenMP pools (threadpoolctl) and torch's intra-op pool to `threads`."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # never import torch for a GBDT model
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=threads):
        if torch is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def summary_ms(seconds) -> dict[str, float]:
    """p50, p99 (numpy's linear interpolation), mean and min, in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min())}
