"""The CI latency gate: `python -m bench latency --check` against reports/latency_baseline.json.

Shared machines are noisy (run-to-run medians move by +-20%), so the gate never compares
absolute times. It times every gated (model, path, N) and a fixed reference kernel (numpy
matmul, gather and a short Python loop: the kinds of work the models do) in the same process,
in alternation, setting aside samples that another process preempted; an entry's figure is
the ratio of its time to the reference's, each the fastest of samples taken in alternation
within one round, and the median ratio over several rounds (`measure` says why). An
entry fails when its ratio exceeds the baseline's by more than the threshold (30%); failing
entries are measured again at once, for up to RETRY_S seconds, and the gate fails only if
they fail again. The table is printed either way.

Gated: small, fast-to-train models (the constant prior, a small LightGBM, a small MMoE on
its exact paths: library, eager, request_shared, projected, compiled) and the request
assembly, at N = 100 and 1,000 candidates, at one thread, trained on the project's tiny
synthetic data set (`gate_data`: ccp.data.synth, generated afresh in a temporary folder,
seconds). Their sizes are fixed here; a size change shows in the table as a changed parameter
count. The samples are taken by ccp.timing (`sample_s`, `robust_s`).

Update the baseline on purpose (a model or path got faster or slower for a reason you accept;
it stores the median of three measurements):
`python -m bench latency --update-baseline`, then commit reports/latency_baseline.json.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccp.data.dataset import Dataset
from ccp.timing import calls_per_sample, pinned_threads, robust_s, sample_s

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE_PATH = REPO_ROOT / "reports" / "latency_baseline.json"
THRESHOLD = 0.30
# How long the second attempt may keep re-measuring failing entries (see `check`).
RETRY_S = 40.0
CANDIDATES = (100, 1000)
THREADS = 1
GATE_SEED = 0
SYNTH_PROFILE = "tiny"


@dataclass(frozen=True)
class Gated:
    pattern: str  # registry key, or a glob whose first match is gated
    paths: tuple[str, ...] = ("library",)
    extra: dict = field(default_factory=dict)  # model options (FitContext.extra)


GATED = (
    Gated("baselines/constant"),
    Gated("baselines/lgbm_ctr_x_cvr", ("library", "compiled")),
    Gated("neural/mmoe", ("library", "eager", "request_shared", "projected", "compiled"),
          {"embedding_dim": 8, "mlp_dims": (64, 32), "tower_dims": (16,), "n_experts": 4}),
)
# Fixed budgets: tiny's, with a fixed number of boosting rounds and one epoch.
PROFILE_OVERRIDES = {"gbdt_max_rounds": "40", "gbdt_early_stopping": "1000",
                     "neural_max_epochs": "1"}


# ---- the data: the project's tiny synthetic data set, generated afresh ----

def gate_data(seed: int = GATE_SEED) -> Dataset:
    """ccp.data.synth's tiny profile (about 20,000 train, 10,000 validation and 10,000 test
    impressions), generated into a temporary folder: the same every time, seconds."""
    from ccp.data.loader import load_generated

    return load_generated(SYNTH_PROFILE, seed)


# ---- the reference kernel (the timing is ccp.timing's) ----

_REF = np.random.default_rng(1)
_REF_A = _REF.standard_normal((192, 192), dtype=np.float32)
_REF_TABLE = _REF.standard_normal((8_000, 16), dtype=np.float32)
_REF_INDEX = _REF.integers(0, 8_000, 8_000)
REFERENCE_KERNEL = ("numpy float32 192x192 matmul + gather of 8,000 random rows of an "
                    "8,000 x 16 table + 100 scalar steps in a Python loop")


def reference_kernel() -> float:
    product = _REF_A @ _REF_A
    gathered = _REF_TABLE[_REF_INDEX].sum(axis=0)
    total = 0.0
    for i in range(100):
        total += float(gathered[i % 16] * product[i, i])
    return total


# ---- what is gated, fitted once per process ----

@dataclass
class Entry:
    key: str  # "model|path|N"
    model: str
    path: str
    n_candidates: int
    call: object  # () -> anything: one request scored (or assembled)
    n_params: int | None = None


def _resolve(pattern: str, specs) -> object | None:
    return next((s for s in specs if fnmatch.fnmatchcase(s.key, pattern)), None)


def build_entries(gated=None, candidates=CANDIDATES, progress: bool = True):
    """Fit the gated models on the gate data; one Entry per (model, path, N), and assembly."""
    gated = GATED if gated is None else gated
    from bench.harness import fitted
    from bench.latency import assemble, calibrate_paths, plan_requests, serving_paths
    from bench.registry import all_specs
    from ccp.profiles import get_profile

    data = gate_data()
    profile = get_profile("tiny").with_overrides(PROFILE_OVERRIDES)
    specs = all_specs()
    requests = {n: assemble(data.test, plan_requests(data.test, n, n_requests=1,
                                                     seed=GATE_SEED)[0])
                for n in candidates}
    entries, skipped = [], []
    for n in candidates:
        plan = plan_requests(data.test, n, n_requests=1, seed=GATE_SEED)[0]
        entries.append(Entry(f"assembly|-|{n}", "assembly", "-", n,
                             lambda plan=plan: assemble(data.test, plan)))
    for gated_model in gated:
        spec = _resolve(gated_model.pattern, specs)
        if spec is None:
            skipped.append(f"{gated_model.pattern}: not registered")
            continue
        if progress:
            print(f"gate: fitting {spec.key} ...", file=sys.stderr, flush=True)
        model = fitted(spec, data, profile, GATE_SEED, THREADS, extra=gated_model.extra)
        if isinstance(getattr(model, "threads", None), int):
            model.threads = THREADS
        paths = serving_paths(model)
        calibrate_paths(paths, data.valid, max(candidates), GATE_SEED)
        n_params = model.n_params() if hasattr(model, "n_params") else None
        for path in gated_model.paths:
            try:
                if path not in paths:
                    raise ImportError(path)
                paths[path](requests[candidates[0]])  # also compiles a lazily built path
            except ImportError:  # no such path here, or its optional library is missing
                skipped.append(f"{spec.key} {path}: path not available")
                continue
            for n in candidates:
                request = requests[n]
                entries.append(Entry(f"{spec.key}|{path}|{n}", spec.key, path, n,
                                     lambda f=paths[path], r=request: f(r), n_params))
    return entries, skipped


@dataclass
class Measured:
    ratio: float  # entry time / reference time in the same round: the median over rounds
    ms: float  # entry milliseconds per call: the smallest over rounds
    reference_ms: float  # reference milliseconds per call: the smallest over the measurement


def measure(entries, rounds: int = 5, samples: int = 10) -> dict[str, Measured]:
    """Each entry's time over the reference kernel's, both sampled in alternation.

    In a round every entry gets `samples` samples alternating with samples of the reference
    kernel (up to 4x as many, until each side has 3 unpreempted ones); robust_s keeps the
    fastest clean one of each. That pair, tens of milliseconds apart, saw the same machine, so
    its ratio cancels the machine's speed. An entry's ratio is the median over the rounds.
    (Earlier rules, each measured here: an entry's minimum over rounds against the reference's
    median, then its minimum, failed one check in twelve when a slow spell fell on the entry's
    rounds only; the smallest paired ratio over rounds, kept over a 40-s second attempt,
    passed a path made 2x slower in 5 of 12 checks under load, because a round whose reference
    samples were all slowed gives a low ratio, and a minimum keeps exactly that round.)
    """
    ratios: dict[str, list[float]] = {}
    own_s: dict[str, float] = {}
    reference_s = np.inf
    with pinned_threads(THREADS):
        reference_calls = calls_per_sample(reference_kernel)
        calls = {e.key: calls_per_sample(e.call) for e in entries}
        for _ in range(rounds):
            for entry in entries:
                own, reference = [], []
                while len(own) < samples or (
                        min(sum(ok for _, ok in own), sum(ok for _, ok in reference)) < 3
                        and len(own) < 4 * samples):
                    reference.append(sample_s(reference_kernel, reference_calls))
                    own.append(sample_s(entry.call, calls[entry.key]))
                own_robust, reference_robust = robust_s(own), robust_s(reference)
                ratios.setdefault(entry.key, []).append(own_robust / reference_robust)
                own_s[entry.key] = min(own_s.get(entry.key, np.inf), own_robust)
                reference_s = min(reference_s, reference_robust)
    return {key: Measured(float(np.median(values)), own_s[key] * 1e3, reference_s * 1e3)
            for key, values in ratios.items()}


# ---- the baseline file, the comparison, the table ----

def _machine() -> dict:
    import os

    from bench.meta import cpu_model, library_versions

    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "libraries": library_versions()}


def machine_differences(recorded: dict | None, now: dict) -> list[str]:
    """What differs between the machine and libraries the baseline was measured with and the
    current ones, one phrase each ("torch 2.13.0 then, 2.14.0 now"); [] when all agree. A
    baseline without the record counts as different: nothing says what it was measured on."""
    if not recorded:
        return ["the baseline does not record its machine and libraries"]
    differ = [f"{key} {recorded.get(key)!r} then, {now.get(key)!r} now"
              for key in ("cpu_model", "cpu_count") if recorded.get(key) != now.get(key)]
    before, after = recorded.get("libraries") or {}, now.get("libraries") or {}
    differ += [f"{name} {before.get(name, 'absent')} then, {after.get(name, 'absent')} now"
               for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    return differ


def _git_commit() -> str | None:
    from bench.meta import collect

    info = collect([])
    commit = info.get("git_commit")
    return f"{commit}{' (dirty)' if info.get('git_dirty') else ''}" if commit else None


def update_baseline(path: Path, rounds: int = 5, threshold: float | None = None,
                    gated=None, progress: bool = True) -> int:
    from bench.harness import utc_now

    started = time.perf_counter()
    entries, skipped = build_entries(gated, progress=progress)
    # The median of three measurements: a baseline caught at a lucky (or unlucky) moment
    # would make later checks fail (or pass) too easily.
    attempts = [measure(entries, rounds) for _ in range(3)]
    measured = {e.key: sorted((a[e.key] for a in attempts), key=lambda m: m.ratio)[1]
                for e in entries}
    baseline = {
        "about": "CI latency gate baseline: each entry's time as a ratio to a reference kernel "
                 "timed in the same process (see bench/latency_gate.py). Update on purpose "
                 "with `python -m bench latency --update-baseline`.",
        "threshold": THRESHOLD if threshold is None else threshold,
        "rounds": rounds, "threads": THREADS, "reference_kernel": REFERENCE_KERNEL,
        "created_utc": utc_now(), "machine": _machine(), "git_commit": _git_commit(),
        "entries": {e.key: {"model": e.model, "path": e.path, "n_candidates": e.n_candidates,
                            "ratio": round(measured[e.key].ratio, 4),
                            "ms": round(measured[e.key].ms, 4),
                            "reference_ms": round(measured[e.key].reference_ms, 4),
                            "ratios_measured": [round(a[e.key].ratio, 4) for a in attempts],
                            "n_params": e.n_params}
                    for e in entries},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
    _print_table(baseline, measured, None, set(), skipped, baseline["threshold"])
    print(f"baseline written: {path} ({len(entries)} entries, "
          f"{time.perf_counter() - started:.0f} s)")
    return 0


def load_baseline(path: Path) -> dict:
    from bench import baseline_file

    baseline = baseline_file.read(path, "latency")
    for key, entry in baseline.get("entries", {}).items():
        if not isinstance(entry.get("ratio"), (int, float)):
            raise ValueError(f"{path}: entry {key!r} has no numeric 'ratio'")
    return baseline


def regressions(baseline: dict, measured: dict[str, Measured], threshold: float) -> list[str]:
    return [key for key, entry in baseline["entries"].items()
            if key in measured and measured[key].ratio > entry["ratio"] * (1 + threshold)]


def check(path: Path = BASELINE_PATH, rounds: int = 5, threshold: float | None = None,
          gated=None, progress: bool = True, build=None, measure_fn=None,
          retry_s: float = RETRY_S) -> int:
    """0 if no entry regressed beyond the threshold twice in a row; 1 otherwise.

    The second attempt measures only the failing entries, in passes of 4x the rounds, each
    entry keeping its best ratio, until every one is back under the threshold or `retry_s`
    seconds have passed (at least one pass).
    """
    started = time.perf_counter()
    baseline = load_baseline(path)
    threshold = baseline.get("threshold", THRESHOLD) if threshold is None else threshold
    differ = machine_differences(baseline.get("machine"), _machine())
    if differ:
        print(f"gate: the baseline was measured on another machine or with other libraries: "
              f"{'; '.join(differ)}", flush=True)
    entries, skipped = (build or build_entries)(gated, progress=progress)
    measure_fn = measure_fn or measure
    first = measure_fn(entries, rounds)
    failing = regressions(baseline, first, threshold)
    second = None
    if failing:
        print(f"gate: {len(failing)} entr{'y' if len(failing) == 1 else 'ies'} over the "
              f"threshold; measuring again: {', '.join(failing)}", flush=True)
        # A longer look, only at the failing entries: this VM has slow spells of seconds to
        # tens of seconds (30-80% slower, and not equally for the reference kernel), in
        # which a single second pass of 2x or 4x the rounds still failed 1-2 checks in 12.
        # A real regression stays over the threshold in every pass.
        second = {}
        retry_until = time.perf_counter() + retry_s
        pending = [e for e in entries if e.key in failing]
        while pending:
            for key, measured in measure_fn(pending, 4 * rounds).items():
                if key not in second or measured.ratio < second[key].ratio:
                    second[key] = measured
            still = set(regressions(baseline, second, threshold))
            pending = [e for e in pending if e.key in still]
            if time.perf_counter() >= retry_until:
                break
    confirmed = set(regressions(baseline, second, threshold)) if second else set()
    # An optional library missing here (e.g. no onnxruntime) leaves a path out: a warning. A
    # gated model or path that is gone from the code fails: update the baseline on purpose.
    unavailable = {note.split(": ")[0] for note in skipped if note.endswith("not available")}
    missing = sorted(k for k in set(baseline["entries"]) - set(first)
                     if " ".join(k.split("|")[:2]) not in unavailable)
    _print_table(baseline, first, second, confirmed, skipped, threshold)
    if differ:
        print("note: the ratios above may have moved because the CPU or the libraries differ "
              "from the baseline's (listed above), not only because of the code; if so, "
              "re-measure the baseline on purpose (--update-baseline)")
    new = sorted(set(first) - set(baseline["entries"]))
    if new:
        print(f"not in the baseline (not gated until it is updated): {', '.join(new)}")
    if missing:
        print(f"FAIL: baseline entries not measured: {', '.join(missing)} (a model or path "
              "was removed or renamed: update the baseline on purpose)")
    verdict = "FAIL" if confirmed or missing else "ok"
    print(f"latency gate: {verdict} ({len(first)} entries, threshold +{threshold:.0%}, "
          f"{time.perf_counter() - started:.0f} s"
          f"{'; baseline from another CPU or other libraries' if differ else ''})")
    if confirmed:
        print("a slowdown that is intended: `python -m bench latency --update-baseline` and "
              "commit reports/latency_baseline.json (README, 'Latency')")
    return 1 if confirmed or missing else 0


def _print_table(baseline, first, second, confirmed, skipped, threshold) -> None:
    header = (f"{'model':<26} {'path':<15} {'N':>5} {'ms':>9} {'ref ms':>7} {'ratio':>8} "
              f"{'baseline':>8} {'change':>7} {'2nd':>8}  status")
    print(header)
    print("-" * len(header))
    for key, now in first.items():
        model, path, n = key.split("|")
        base = baseline["entries"].get(key) if baseline else None
        base_ratio = base["ratio"] if base else None
        change = f"{now.ratio / base_ratio - 1:+.0%}" if base_ratio else ""
        again = second.get(key) if second else None
        status = "new" if base is None else "ok"
        if again is not None:
            status = "FAIL" if key in confirmed else "ok on 2nd attempt"
        elif base_ratio and now.ratio > base_ratio * (1 + threshold):
            status = "over"
        print(f"{model:<26} {path:<15} {n:>5} {now.ms:>9.3f} {now.reference_ms:>7.3f} "
              f"{now.ratio:>8.3f} {base_ratio if base_ratio else '':>8} {change:>7} "
              f"{f'{again.ratio:.3f}' if again else '':>8}  {status}")
    for note in skipped:
        print(f"skipped: {note}")
