"""The serving latency `python -m bench run` measures on every model it fits (`--no-latency`
skips it).

Right after a model is fitted and evaluated, the harness hands it to `RunLatency` (no refit, no
fitted model kept): at one thread, for N = 1 and 1,000 candidates, it times the model's library
path and its fastest path that scores equal to it, and appends the same `kind: "latency"`
records as `python -m bench latency` (bench/latency.py) to the run's results, so the report's
latency column, cost sentences and Pareto figure show serving latency.

The fastest equal path is found in two steps per N, both on the same planned requests:
every path of `bench.latency.serving_paths` (whatever the model's family offers, so a new path
is picked up without an edit here) but the reduced-precision ones is checked against the
library on every request (max abs difference <= EQUAL_WITHIN on every output), the equal ones
are timed briefly in turn (SCREEN), and the fastest by median is then measured with the
library as `bench latency` measures (TIMING: fewer repeats than its default, so that the step
stays cheap; p99 still rests on 150 or more requests: 200 made the step 186 s for the 30
models of the tuned default run, over its 3-minute budget). Only the first seed of a model is
measured: the seed does not change a model's size or its serving code.
"""

from __future__ import annotations

import sys
import time

import numpy as np

CANDIDATES = (1, 1000)
THREADS = 1
EQUAL_WITHIN = 1e-5
# Brief timing that only ranks the equal paths; then the chosen one and the library for real.
SCREEN = {"warmup": 1, "min_repeats": 8, "budget_s": 0.0, "collect": False}
TIMING = {"warmup": 10, "min_repeats": 150, "budget_s": 0.2}

def fastest_equal_path(model, paths: dict, split, n_candidates: int,
                       seed: int = 0) -> tuple[str | None, dict[str, float]]:
    """The fastest path other than the library that scores equal to it, and the screened
    median ms of every equal path (the library included); None when no other path is equal."""
    from bench.latency import (
        assemble,
        check_paths,
        model_threads,
        plan_requests,
        reduced_precision_paths,
        time_requests,
    )

    plans = plan_requests(split, n_candidates, seed=seed)
    reference = [model.predict(assemble(split, plan)) for plan in plans]
    exact = {name: score for name, score in paths.items()
             if name not in reduced_precision_paths(model)}
    with model_threads(model, THREADS):
        diffs, _errors = check_paths(exact, split, plans, reference)
        equal = {name: exact[name] for name, diff in diffs.items() if diff <= EQUAL_WITHIN}
        if len(equal) < 2:
            return None, {}
        timings = time_requests(equal, split, plans, **SCREEN)
    median_ms = {name: float(np.median(t.scoring_s)) * 1e3 for name, t in timings.items()}
    others = [name for name in median_ms if name != "library"]
    return min(others, key=lambda name: (median_ms[name], name)), median_ms



def measure_fitted(model, split, base: dict, progress: bool = False,
                   calibration=None) -> list[dict]:
    """Latency records of a fitted model: library and fastest equal path, per N, at 1 thread;
    self-tuning paths calibrated on `calibration` (the validation split; default: `split`)."""
    from bench.latency import calibrate_paths, measure_model, serving_paths

    paths = serving_paths(model)
    calibrate_paths(paths, split if calibration is None else calibration, max(CANDIDATES))
    records = []
    for n in CANDIDATES:
        fastest, screened = fastest_equal_path(model, paths, split, n)
        chosen = {"library": paths["library"], **({fastest: paths[fastest]} if fastest else {})}
        fields = {**base, "latency_source": "run",
                  "paths_screened": ", ".join(f"{name} {ms:.3g} ms"
                                              for name, ms in sorted(screened.items()))}
        records += measure_model(model, chosen, split, (n,), (THREADS,), fields,
                                 progress=progress, **TIMING)
    return records


class RunLatency:
    """The harness's `on_fitted` hook: measures each model once (its first seed), appends the
    records to the run folder and keeps count of the seconds it took."""

    def __init__(self, run_dir, data, profile_name: str, progress: bool = False):
        self.run_dir, self.data, self.profile_name = run_dir, data, profile_name
        self.progress = progress
        self.measured: list[str] = []
        self.seconds = 0.0  # wall-clock
        self.cpu_seconds = 0.0  # this process's CPU time: a figure a loaded machine moves less
        self.failed: list[str] = []

    def __call__(self, spec, seed: int, model) -> None:
        from ccp.timing import Stopwatch

        if spec.key in self.measured:
            return
        self.measured.append(spec.key)
        base = self._base(spec, seed)
        with Stopwatch() as watch:
            try:
                records = measure_fitted(model, self.data.test, base, self.progress,
                                         calibration=self.data.valid)
            except Exception as error:  # latency that cannot be measured is a row, not a crash
                records = [self._error_record(base, f"{type(error).__name__}: {error}")]
            self._append(records)
        seconds, cpu_seconds = watch.wall_s, watch.cpu_s
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds
        if self.progress:
            print(f"    serving latency measured in {seconds:.1f}s ({cpu_seconds:.1f}s CPU)",
                  file=sys.stderr, flush=True)

    def unmeasured(self, spec, seed: int, why: str) -> None:
        """A model whose latency could not be measured at all (bench.run_jobs: not sent)."""
        self.measured.append(spec.key)
        self._append([self._error_record(self._base(spec, seed), why)])

    def _base(self, spec, seed: int) -> dict:
        return {"model": spec.key, "name": spec.name, "family": spec.family,
                "dataset": self.data.name, "fingerprint": self.data.fingerprint,
                "profile": self.profile_name, "seed": seed}

    @staticmethod
    def _error_record(base: dict, error: str) -> dict:
        from bench.harness import bench_version, utc_now

        return {**base, "kind": "latency", "latency_source": "run", "n_candidates": None,
                "threads": THREADS, "path": None, "p50_ms": None, "version": bench_version(),
                "utc": utc_now(), "error": error}

    def _append(self, records: list[dict]) -> None:
        from bench.harness import append_record

        for record in records:
            append_record(self.run_dir, record)
        if any(r.get("error") for r in records):
            self.failed.append(records[0]["model"])

    def meta(self) -> dict:
        """What meta.json records of the step: settings, models, and the time it added."""
        return {"seconds": round(self.seconds, 1), "cpu_seconds": round(self.cpu_seconds, 1),
                # the whole command's CPU time so far, to set the step's share against
                "process_cpu_seconds": round(time.process_time(), 1), "models": list(self.measured),
                "failed": list(self.failed), "candidates": list(CANDIDATES),
                "threads": THREADS, "equal_within": EQUAL_WITHIN, "screen": SCREEN,
                "timing": TIMING, "paths": "library and the fastest path scoring equal to it"}
