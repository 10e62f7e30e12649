"""Request-level serving latency: requests built from real test rows, timed the careful way.

A request is what the ranking stage receives: one user context plus N candidate items. It is
built from the test split of a `Dataset` (see `plan_requests`):

- the user context is one test request (its row of the request table: user codes, behaviour
  lists, and the user-level dense columns, read from one of its own impressions);
- the first candidates are that request's own test impressions (at most N of them), and the
  rest are the item sides (item codes, combination codes, intention lists, combination values)
  of other test impressions, drawn at random without replacement (with replacement only when
  the split has fewer rows than N). A borrowed impression keeps its combination features as
  they were; a server would recompute them for this user, at no cost to the model, and the
  values do not change how long a model takes.

Timing (`time_requests`): several different requests per N are assembled and scored in turn;
after a warm-up, each repeat times feature assembly (gathering the request's codes, lists and
dense columns from the cached arrays into a one-request `Split`) and model scoring apart, with
garbage collection paused as timeit does. A model's paths are timed in alternation, request by
request at one thread (in blocks of BLOCK requests at more, see BLOCK), so that a change in the
machine's load falls on all of them alike. Repeats run until
both a minimum count and a time budget are met (or a maximum count is reached), so p99 rests
on several samples. Threads are pinned with threadpoolctl and `torch.set_num_threads`
(`pinned_threads`). The clock, the pause of garbage collection and the percentiles are
ccp.timing's, as for every measurement of the project.
"""

from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ccp.data import schema
from ccp.data.dataset import Split
from ccp.tasks import MAIN_TASKS
from ccp.timing import clock, paused_gc, pinned_threads, summary_ms

# Dense columns that depend on the user only (behaviour-list weights and lengths).
USER_DENSE_COLUMNS = np.array([i for i, name in enumerate(schema.DENSE_FEATURES)
                               if name.split("_value")[0] not in schema.COMBINATION])
DEFAULT_CANDIDATES = (1, 100, 1000)
DEFAULT_THREADS = (1, 2)
# At more than one thread, paths are timed in blocks (`time_requests`), not request by request.
# Why: after a torch path returns, torch's OpenMP workers keep spinning for several ms (other
# threads burned 2-8 ms of CPU in the 2-50 ms after each torch call, ~0 after ONNX Runtime's
# own run; measured at 2 threads), and a pool that has gone to sleep must be woken and
# rescheduled. Alternating pools request by request, a path started while another pool still
# held a core (request_shared p50 1.6x slower with the ONNX Runtime path in the rotation, on a
# machine at load ~28).
BLOCK = 20  # requests timed per turn of a path
SETTLE_S = 0.03  # untimed requests of the path itself first: longer than the spinning


@dataclass(frozen=True)
class RequestPlan:
    """Which rows of a split make one request."""

    user_row: int  # row of the split's request table: the user context
    candidate_rows: np.ndarray  # impressions whose item side fills the N candidates
    n_own: int  # how many candidates are the request's own impressions (they come first)


@dataclass
class Timing:
    """Per-repeat seconds of assembly and scoring for one (model, path, N, threads)."""

    assembly_s: np.ndarray
    scoring_s: np.ndarray
    warmup: int

    @property
    def repeats(self) -> int:
        return len(self.scoring_s)


def plan_requests(split: Split, n_candidates: int, n_requests: int = 8,
                  seed: int = 0) -> list[RequestPlan]:
    """`n_requests` different requests of `n_candidates` candidates each (see module doc)."""
    if n_candidates < 1:
        raise ValueError(f"a request needs at least one candidate, got {n_candidates}")
    if len(split) == 0:
        raise ValueError(f"split {split.name!r} has no impressions to build requests from")
    rng = np.random.default_rng(seed)
    present = np.unique(split.request)
    users = rng.choice(present, size=min(n_requests, len(present)), replace=False)
    plans = []
    for user in users:
        own = np.flatnonzero(split.request == user)[:n_candidates]
        need = n_candidates - len(own)
        others = np.flatnonzero(split.request != user)
        if len(others) == 0:  # a one-request split: repeat its own impressions
            others = own
        filler = rng.choice(others, size=need, replace=need > len(others))
        plans.append(RequestPlan(int(user), np.concatenate([own, filler]), len(own)))
    return plans


def assemble(split: Split, plan: RequestPlan) -> Split:
    """The request as a one-request `Split`: the model's input, gathered from cached arrays."""
    rows = plan.candidate_rows
    user = np.array([plan.user_row])
    dense = split.dense[rows]
    # Every candidate sees this user's behaviour statistics, read from one of its own rows.
    dense[:, USER_DENSE_COLUMNS] = split.dense[rows[0], USER_DENSE_COLUMNS]
    return Split(
        name=f"request-{plan.user_row}",
        click=split.click[rows],
        purchase=split.purchase[rows],
        sample_id=split.sample_id[rows],
        request=np.zeros(len(rows), dtype=np.int64),
        item_codes=split.item_codes[rows],
        item_multi={name: lists.take(rows) for name, lists in split.item_multi.items()},
        dense=dense,
        request_key=split.request_key[user],
        user_codes=split.user_codes[user],
        user_multi={name: lists.take(user) for name, lists in split.user_multi.items()},
    )


@contextmanager
def model_threads(model, threads: int):
    """Tell a model that pins its own predict threads (an int `threads` attribute) the count."""
    before = getattr(model, "threads", None)
    if isinstance(before, int):
        model.threads = threads
    try:
        with pinned_threads(threads):
            yield
    finally:
        if isinstance(before, int):
            model.threads = before


def time_request(score, split: Split, plans: list[RequestPlan], **timing) -> Timing:
    """Time `score(request_split)` and the assembly of its input, request by request."""
    return time_requests({"only": score}, split, plans, **timing)["only"]


def time_requests(scorers: dict, split: Split, plans: list[RequestPlan], warmup: int = 10,
                  min_repeats: int = 300, budget_s: float = 3.0,
                  max_repeats: int = 5000, block: int = 1,
                  settle_s: float = 0.0, collect: bool = True) -> dict[str, Timing]:
    """Time several scoring paths in turn, so they share the machine's moods.

    block 1 (the default, right at one thread): request by request, each repeat assembles and
    scores the same request once per path. block > 1 (for several threads, see
    `measure_model`): each path in turn scores `block` consecutive requests, timed, after
    untimed requests of its own lasting `settle_s` (at least one): a path then never starts
    while another path's thread pool still holds a core, or with its own pool asleep.
    collect: a full garbage collection first (0.1-1 s with torch loaded; a brief screen of
    paths, bench.run_latency, skips it).
    """
    for i in range(warmup):
        for score in scorers.values():
            score(assemble(split, plans[i % len(plans)]))
    assembly = {name: [] for name in scorers}
    scoring = {name: [] for name in scorers}
    budget = budget_s * len(scorers)
    with paused_gc(collect):
        started, repeats = clock(), 0
        while repeats < max_repeats and (repeats < min_repeats or clock() - started < budget):
            run = range(repeats, min(repeats + block, max_repeats))
            for name, score in scorers.items():
                if block > 1:
                    _settle(score, split, plans, settle_s)
                for repeat in run:
                    t0 = clock()
                    request = assemble(split, plans[repeat % len(plans)])
                    t1 = clock()
                    score(request)
                    t2 = clock()
                    assembly[name].append(t1 - t0)
                    scoring[name].append(t2 - t1)
            repeats += len(run)
    return {name: Timing(np.array(assembly[name]), np.array(scoring[name]), warmup)
            for name in scorers}


def _settle(score, split: Split, plans: list[RequestPlan], settle_s: float) -> None:
    """Untimed requests of one path, for `settle_s` seconds and at least one request."""
    until, i = clock() + settle_s, 0
    while i == 0 or clock() < until:
        score(assemble(split, plans[i % len(plans)]))
        i += 1


def max_abs_diff(outputs: dict, reference: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(outputs[k], dtype=np.float64)
                                   - np.asarray(reference[k], dtype=np.float64))))
               for k in MAIN_TASKS)


def serving_paths(model) -> dict:
    """Every way this model can score a request: {path name: split -> outputs dict}.

    "library" is the model's own `predict`. A GBDT model that exposes `predict_fast` adds
    "compiled"; a neural model adds what `neural.serving_paths` can build for it (imported only for
    neural models, so that a GBDT run never imports torch).
    """
    paths = {"library": model.predict}
    fast = getattr(model, "predict_fast", None)
    if callable(fast):
        if "threads" in inspect.signature(fast).parameters:
            # Score with the thread count being measured (model_threads sets model.threads).
            paths["compiled"] = lambda split: fast(split, threads=getattr(model, "threads", 1))
        else:
            paths["compiled"] = fast
    serving = _family_serving(model)
    if serving is not None:
        paths.update(serving.serving_paths(model))
    return paths


def reduced_precision_paths(model) -> frozenset[str]:
    """Paths that score close to the library by design but not equal to it (int8, bf16):
    never a model's "fastest equal" path, even where they fall within the tolerance."""
    serving = _family_serving(model)
    return frozenset(getattr(serving, "REDUCED_PRECISION", ()))


def _family_serving(model):
    """The serving paths module of the model's family (neural.serving_paths), or None; imported
    only for neural models, so that a GBDT run never imports torch."""
    if type(model).__module__.split(".")[0] == "neural":
        from neural import serving_paths

        return serving_paths
    return None


def calibrate_paths(paths: dict, split: Split, n_candidates: int, seed: int = 0) -> None:
    """Let every path that tunes itself on its first requests (a `calibrate(requests)` method:
    the projected path orders its pruned units, neural/pruned.py) do so before anything is
    timed, on requests of `n_candidates` built from `split`: the validation split where the
    caller has one (the order is a choice, made off the test rows; the scores are the same
    either way), and never the users `plan_requests` would time on it, so that no figure mixes
    a path's calibration with its serving. A path already `calibrated` is left alone (the
    run's latency step calibrates, then measures through measure_model)."""
    tuning = [path.calibrate for path in paths.values()
              if hasattr(path, "calibrate") and not getattr(path, "calibrated", False)]
    if tuning:
        # The timed requests' users are the same at every N (plan_requests draws them first).
        timed = {plan.user_row for plan in plan_requests(split, n_candidates, seed=seed)}
        requests = [assemble(split, plan) for plan in
                    plan_requests(split, n_candidates, n_requests=16, seed=seed + 1)
                    if plan.user_row not in timed]
        for calibrate in tuning:
            calibrate(requests)


def check_paths(paths: dict, split: Split, plans: list[RequestPlan],
                reference: list[dict]) -> tuple[dict[str, float], dict[str, str]]:
    """Each path's largest difference from `reference` (the library's outputs) over every
    planned request, and the error of each path that failed (a failed path is not a crash)."""
    diffs, errors = {}, {}
    for path, score in paths.items():
        try:
            diffs[path] = max(max_abs_diff(score(assemble(split, plan)), ref)
                              for plan, ref in zip(plans, reference, strict=True))
        except Exception as error:
            errors[path] = f"{type(error).__name__}: {error}"
    return diffs, errors


def measure_model(model, paths: dict, split: Split, candidates=DEFAULT_CANDIDATES,
                  threads=DEFAULT_THREADS, base: dict | None = None, seed: int = 0,
                  progress: bool = False, calibration: Split | None = None,
                  **timing) -> list[dict]:
    """One latency record per (path, N, threads); a path that fails is a record with its error."""
    from bench.harness import bench_version, utc_now

    base = {"kind": "latency", "split": split.name, "version": bench_version(),
            "n_params": model.n_params() if hasattr(model, "n_params") else None,
            **(base or {})}
    reduced = reduced_precision_paths(model)
    # calibration: the validation split where the caller has one (see calibrate_paths)
    calibrate_paths(paths, split if calibration is None else calibration, max(candidates), seed)
    records = []
    for n in candidates:
        plans = plan_requests(split, n, seed=seed)
        # Every path must give the library's scores, on every request it is timed on.
        reference = [model.predict(assemble(split, plan)) for plan in plans]
        for t in threads:
            blocking = {"block": BLOCK, "settle_s": SETTLE_S} if t > 1 else {}
            fields = {**base, "n_candidates": n, "threads": t, "n_requests_sampled": len(plans),
                      "timing_block": blocking.get("block", 1)}
            with model_threads(model, t):
                diffs, errors = check_paths(paths, split, plans, reference)
                records += [{**fields, "path": path, "p50_ms": None, "utc": utc_now(),
                             "error": error} for path, error in errors.items()]
                timings = time_requests({p: paths[p] for p in diffs}, split, plans,
                                        **{**blocking, **timing})
                macs = _macs(model, {p: paths[p] for p in diffs}, assemble(split, plans[0]))
            for path, timing_result in timings.items():
                figures = _figures(timing_result, n)
                records.append({**fields, "path": path, **figures,
                                **_roofline(macs, path, figures["p50_ms"], t),
                                "max_abs_diff_vs_library": diffs[path],
                                "reduced_precision": path in reduced, "utc": utc_now(),
                                "error": None})
                if progress:
                    r = records[-1]
                    print(f"    {path:<15} N={n:<5} threads={t}  p50 {r['p50_ms']:8.3f} ms  "
                          f"p99 {r['p99_ms']:8.3f} ms  assembly p50 "
                          f"{r['assembly_p50_ms']:.3f} ms  ({r['repeats']} repeats)",
                          file=sys.stderr, flush=True)
    return records


def _macs(model, paths: dict, request: Split) -> dict | None:
    """Multiply-adds per request of each path of a neural model (neural.roofline), else None."""
    if type(model).__module__.split(".")[0] != "neural":
        return None
    from neural.roofline import request_macs

    return {path: request_macs(score, request) for path, score in paths.items()}


def _roofline(macs: dict | None, path: str, p50_ms: float, threads: int) -> dict:
    """macs_per_request and the fraction of the 1-process sgemm peak it ran at (neural)."""
    if macs is None:
        return {}
    from neural.roofline import roofline_fields

    with pinned_threads(threads):
        return roofline_fields(macs.get(path), p50_ms, threads)


def _figures(timing: Timing, n_candidates: int) -> dict:
    scoring = summary_ms(timing.scoring_s)
    assembly = summary_ms(timing.assembly_s)
    total = summary_ms(timing.assembly_s + timing.scoring_s)
    return {**scoring,
            "candidates_per_s": n_candidates / (scoring["mean_ms"] / 1e3),
            "assembly_p50_ms": assembly["p50_ms"], "assembly_p99_ms": assembly["p99_ms"],
            "assembly_mean_ms": assembly["mean_ms"],
            "total_p50_ms": total["p50_ms"], "total_p99_ms": total["p99_ms"],
            "repeats": timing.repeats, "warmup": timing.warmup,
            "timing_method": "perf_counter per request after warm-up, gc paused; scoring and "
                             "assembly timed apart; p99 by linear interpolation"}
