"""The CI accuracy gate: `python -m bench accuracy --check` against reports/accuracy_baseline.json.

The tests check that each model beats a random score; this gate checks that no model got worse
than it was. It trains every registered model the way the harness does (bench.harness.run_one,
which also scores the validation split here) on the `tiny` synthetic data set, generated
in-process into a temporary folder (fixed data seed: the same rows every time), with fixed
model seeds, and compares each (model, split, task) AUC with the baseline's.

Tolerances come from measured seed variance, not from a guess. The baseline trains every model
with k seeds (BASELINE_SEEDS) and stores, per entry, the k AUCs, their mean and standard
deviation sd. A check trains the first m of those seeds (CHECK_SEEDS) and fails an entry when
its mean AUC is below the baseline mean by more than

    tolerance = max(c * sd * sqrt(1/m + 1/k), FLOOR),  c = t quantile(1 - ALPHA / N, k - 1)

sd * sqrt(1/m + 1/k) is the standard deviation of the difference of the two means when a code
change re-draws every seed's outcome (an unchanged tree reproduces the same AUCs: it passes
whatever the tolerance). c makes the chance that such a change, costing nothing, fails the
gate at most ALPHA (5%) over all N entries that vary with the seed (distinct ones: models that
share a forest share entries): Bonferroni, with Student's t because sd is estimated from k
seeds. (Measured on the 7-seed baseline, replaying its 21 splits into 5 baseline and 2
held-out check seeds: c = 3 failed the gate in 12 of 21; this rule, c = 9.35 at k = 5, in none.)
FLOOR covers models that do not depend on the seed (their sd is 0) against float-level changes
of a library or a CPU. An improvement never fails (it is marked `better`: update the baseline
to keep it). A registered model missing from the baseline is
shown and not gated; a baseline model that is no longer registered, or that now fails to train,
fails the gate; so does data that no longer matches the baseline's fingerprint.

Update the baseline on purpose (a model, a budget or the data generator changed for a reason
you accept): `python -m bench accuracy --update-baseline`, then commit the file.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE_PATH = REPO_ROOT / "reports" / "accuracy_baseline.json"
SYNTH_PROFILE = "tiny"  # ccp/data/synth.py: ~20k train, ~10k valid, ~10k test impressions
DATA_SEED = 0
PROFILE = "tiny"  # ccp/profiles.py: the budgets of the tests
# The gate compares AUCs only; the request-level bootstrap of each record is not used.
PROFILE_OVERRIDES = {"n_bootstrap": "1"}
# One thread: on a shared, oversubscribed machine two OpenMP threads spin at every barrier
# (XGBoost at 2 threads under load ~30: 65 s wall for 7 s CPU, 5 s wall at 1 thread).
THREADS = 1
BASELINE_SEEDS = (0, 1, 2, 3, 4, 5, 6)
CHECK_SEEDS = (0, 1)
ALPHA = 0.05  # family-wise chance of a false alarm after a change that re-draws the seeds
FLOOR = 0.005
SPLITS = ("valid", "test")


def sd_multiple(n_random: int, k: int, alpha: float = ALPHA) -> float:
    """Student's t quantile at 1 - alpha / n_random with k - 1 degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / max(n_random, 1), k - 1))


def n_random_entries(entries: dict) -> int:
    """Entries whose AUC varies with the seed, counting identical AUC lists once."""
    return len({tuple(e["aucs"]) for e in entries.values() if e["sd"] > 0})


def rule_text(sd_multiple: float, floor: float, k: int, m: int) -> str:
    return (f"an entry fails when its mean AUC over the {m} check seeds is below the mean over "
            f"the {k} baseline seeds by more than its tolerance = max({sd_multiple:.2f} x sd x "
            f"sqrt(1/{m} + 1/{k}), {floor:g}), sd being the standard deviation of the {k} "
            "baseline AUCs; improvements never fail")


def tolerance(sd: float, k: int, m: int, sd_multiple: float, floor: float = FLOOR) -> float:
    return max(sd_multiple * sd * math.sqrt(1 / m + 1 / k), floor)


def gate_profile():
    from ccp.profiles import get_profile

    return get_profile(PROFILE).with_overrides(PROFILE_OVERRIDES)


def _as_stored(values: dict) -> dict:
    """`values` as the baseline file stores them (tuples as lists)."""
    return json.loads(json.dumps(values, default=list))


def _profile_fields() -> dict:
    """The gate profile's budgets as the baseline file stores them."""
    return _as_stored(gate_profile().__dict__)


def _same_budgets(stored: dict | None) -> bool:
    """The baseline's profile is today's, a setting added since at its default (which
    changes nothing the baseline measured) counting as equal."""
    if stored is None:
        return True
    import dataclasses

    from ccp.profiles import Profile

    defaults = _as_stored({f.name: f.default for f in dataclasses.fields(Profile)
                           if f.default is not dataclasses.MISSING})
    return all(stored.get(key, defaults.get(key)) == value
               for key, value in _profile_fields().items())


@functools.cache
def gate_data():
    """The tiny synthetic data set, generated afresh and loaded in memory (once per process:
    every model and seed is fitted on the same rows)."""
    from ccp.data.loader import load_generated

    return load_generated(SYNTH_PROFILE, DATA_SEED)


def key(model: str, split: str, task: str) -> str:
    return f"{model}|{split}|{task}"


def measure(specs, data, seeds, progress: bool = True) -> tuple[dict, dict]:
    """AUCs per entry key, one per seed in `seeds` order, and {model: error} of failed fits."""
    from bench.harness import run_one

    profile = gate_profile()
    aucs: dict[str, list] = {}
    errors: dict[str, str] = {}
    for step, spec in enumerate(specs, 1):
        started = time.perf_counter()
        for seed in seeds:
            # run_one scores the valid split too (records with split "valid").
            records = run_one(spec, data, profile, seed, THREADS, progress=False)
            failed = next((r["error"] for r in records if r.get("error")), None)
            if failed:
                errors[spec.key] = failed
                break
            for record in records:
                aucs.setdefault(key(spec.key, record["split"], record["task"]),
                                []).append(record["auc"])
        if progress:
            print(f"gate: [{step}/{len(specs)}] {spec.key}: {len(seeds)} seed(s), "
                  f"{time.perf_counter() - started:.1f} s"
                  f"{'  FAILED: ' + errors[spec.key] if spec.key in errors else ''}",
                  file=sys.stderr, flush=True)
    aucs = {k: v for k, v in aucs.items() if k.split("|")[0] not in errors}
    return aucs, errors


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def update_baseline(path: Path = BASELINE_PATH, seeds=BASELINE_SEEDS, check_seeds=None,
                    models=None, progress: bool = True) -> int:
    """Train with every baseline seed and write the baseline; 1 if a model failed to train.

    With `models`, only those models are re-measured; the file's other entries are kept when
    they were measured on the same data with the same seeds (else they are dropped)."""
    from bench.harness import utc_now
    from bench.latency_gate import _git_commit, _machine
    from bench.registry import select

    seeds = tuple(seeds)
    check_seeds = tuple(seeds[:len(CHECK_SEEDS)] if check_seeds is None else check_seeds)
    if len(seeds) < 2 or not set(check_seeds) <= set(seeds):
        raise ValueError(f"the baseline needs at least 2 seeds, the check seeds among them: "
                         f"got {list(seeds)} and {list(check_seeds)}")
    started = time.perf_counter()
    data, specs = gate_data(), select(models)
    aucs, errors = measure(specs, data, seeds, progress)
    k, m = len(seeds), len(check_seeds)
    entries = {}
    for entry_key, values in sorted(aucs.items()):
        model, split, task = entry_key.split("|")
        finite = [v for v in values if v is not None]
        sd = float(np.std(finite, ddof=1)) if len(finite) >= 2 else 0.0
        entries[entry_key] = {"model": model, "split": split, "task": task,
                              "aucs": [None if v is None else round(v, 6) for v in values],
                              "mean": None if _mean(values) is None else round(_mean(values), 6),
                              "sd": round(sd, 6)}
    settings = {"data": {"synth_profile": SYNTH_PROFILE, "data_seed": DATA_SEED,
                         "fingerprint": data.fingerprint,
                         "rows": {name: len(split) for name, split in data.splits.items()}},
                "baseline_seeds": list(seeds), "check_seeds": list(check_seeds),
                "family_alpha": ALPHA, "floor": FLOOR, "threads": THREADS,
                "profile": _profile_fields()}
    old, earlier = _kept_entries(path, settings, {s.key for s in specs}) if models else ({}, None)
    entries = {**old, **entries}
    n_random = n_random_entries(entries)
    multiple = sd_multiple(n_random, k)
    for entry in entries.values():
        entry["tolerance"] = round(tolerance(entry["sd"], k, m, multiple), 6)
    baseline = {
        "about": "CI accuracy gate baseline: AUCs of every registered model on the tiny "
                 "synthetic data, per seed (see bench/accuracy_gate.py). Update on purpose "
                 "with `python -m bench accuracy --update-baseline`.",
        "rule": rule_text(multiple, FLOOR, k, m), **settings,
        "sd_multiple": round(multiple, 4), "n_random_entries": n_random,
        "sd_multiple_rule": f"Student's t quantile at 1 - {ALPHA:g} / {n_random} (entries that "
                            f"vary with the seed, identical ones once), {k - 1} degrees of "
                            "freedom",
        "created_utc": utc_now(), "machine": _machine(), "git_commit": _git_commit(),
        "seconds": round(time.perf_counter() - started), "not_gated": errors,
        "entries": entries,
    }
    if earlier:
        baseline["entries_kept_from"] = earlier
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(baseline, indent=2, sort_keys=True, default=list) + "\n")
    print_table(baseline, None, set())
    for model, error in errors.items():
        print(f"FAILED to train, not in the baseline: {model}: {error}")
    print(f"baseline written: {path} ({len(baseline['entries'])} entries, {k} seeds, "
          f"{time.perf_counter() - started:.0f} s)")
    return 1 if errors else 0


def _kept_entries(path: Path, settings: dict, remeasured: set[str]) -> tuple[dict, dict | None]:
    """The entries of other models in an existing baseline made with the same settings, and
    where they came from (tolerances are recomputed over the merged entries)."""
    if not Path(path).exists():
        return {}, None
    old = load_baseline(path)
    # What the kept AUCs were measured with must match; the rule is re-applied to them.
    if any(old.get(name) != settings.get(name)
           for name in ("data", "baseline_seeds", "threads", "profile")):
        print(f"note: {path} was measured on other data or seeds: its other models are dropped")
        return {}, None
    kept = {k: e for k, e in old["entries"].items() if e["model"] not in remeasured}
    earlier = old.get("entries_kept_from") or {"git_commit": old.get("git_commit"),
                                               "created_utc": old.get("created_utc")}
    return kept, earlier


def load_baseline(path: Path) -> dict:
    from bench import baseline_file

    baseline = baseline_file.read(path, "accuracy")
    for name in ("entries", "check_seeds", "data"):
        if name not in baseline:
            raise ValueError(f"{path}: field {name!r} missing (rewrite it with "
                             "`python -m bench accuracy --update-baseline`)")
    for entry_key, entry in baseline["entries"].items():
        for name in ("mean", "tolerance"):
            if not isinstance(entry.get(name), (int, float)) and entry.get(name) is not None:
                raise ValueError(f"{path}: entry {entry_key!r} has no numeric {name!r}")
    return baseline


def drops(entries: dict, now: dict) -> set[str]:
    """Entry keys whose AUC now is below the baseline mean by more than the tolerance."""
    return {k for k, e in entries.items() if k in now and e["mean"] is not None
            and (now[k] is None or e["mean"] - now[k] > e["tolerance"])}


def check(path: Path = BASELINE_PATH, models=None, progress: bool = True) -> int:
    """0 when no gated entry dropped beyond its tolerance; 1 otherwise (the table either way).

    models: globs (bench.registry.select); only their entries are checked, and a baseline
    model outside them is not missed."""
    from bench.registry import all_specs, select

    started = time.perf_counter()
    baseline = load_baseline(path)
    specs = select(models)
    chosen = {s.key for s in specs}
    data = gate_data()
    expected = baseline["data"].get("fingerprint")
    if data.fingerprint != expected:
        print(f"accuracy gate: FAIL: the gate's data set changed (fingerprint "
              f"{data.fingerprint}, the baseline's {expected}): the synthetic generator, the "
              "loader or the tiny profile changed; if on purpose, `python -m bench accuracy "
              "--update-baseline` and commit reports/accuracy_baseline.json")
        return 1
    gated = {k: e for k, e in baseline["entries"].items()
             if models is None or e["model"] in chosen}
    if not _same_budgets(baseline.get("profile")):
        print("note: the tiny profile's budgets differ from the baseline's; a change beyond "
              "the tolerance may come from that (ccp/profiles.py)")
    aucs, errors = measure(specs, data, baseline["check_seeds"], progress)
    now = {k: _mean(v) for k, v in aucs.items()}
    failing = drops(gated, now)
    registered = {s.key for s in all_specs()}
    gone = sorted({e["model"] for e in gated.values()} - registered)
    broken = sorted(m for m in errors if any(e["model"] == m for e in gated.values()))
    unmeasured = sorted(k for k, e in gated.items() if k not in now
                        and e["model"] not in errors and e["model"] in registered)
    print_table({**baseline, "entries": gated}, now, failing)
    new = sorted({k.split("|")[0] for k in now} - {e["model"] for e in gated.values()})
    if new:
        print(f"not in the baseline (not gated until it is updated): {', '.join(new)}")
    for model in broken:
        print(f"FAIL: {model} no longer trains: {errors[model]}")
    if gone:
        print(f"FAIL: baseline models no longer registered: {', '.join(gone)} (removed or "
              "renamed: update the baseline on purpose)")
    if unmeasured:
        print(f"FAIL: baseline entries not measured: {', '.join(unmeasured)}")
    ok = not (failing or broken or gone or unmeasured)
    n_models = len({e["model"] for e in gated.values()})
    print(f"accuracy gate: {'ok' if ok else 'FAIL'} ({len(gated)} entries of {n_models} "
          f"models, {len(failing)} dropped beyond tolerance, seeds "
          f"{','.join(map(str, baseline['check_seeds']))}, {time.perf_counter() - started:.0f} s)")
    if failing:
        print("a drop that is intended: `python -m bench accuracy --update-baseline` and commit "
              "reports/accuracy_baseline.json (README, 'Accuracy gate')")
    return 0 if ok else 1


def _cells(entry: dict | None, now: float | None, checking: bool) -> str:
    """One split's cells: baseline mean ± tolerance, then AUC now and change (a check) or the
    seed sd (a baseline being written)."""
    base = (f"{entry['mean']:.4f}±{entry['tolerance']:.4f}"
            if entry and entry["mean"] is not None else "")
    if not checking:
        return f"{base:>20} {entry['sd'] if entry else 0:>9.4f} {'':>7}"
    if now is None:
        return f"{base:>20} {'—':>9} {'':>7}"
    change = f"{now - entry['mean']:+.4f}" if base else ""
    return f"{base:>20} {now:>9.4f} {change:>7}"


def print_table(baseline: dict, now: dict | None, failing: set[str]) -> None:
    """One row per (model, task): each split's baseline mean ± tolerance, then the AUC now and
    its change (now: a check's mean AUCs) or the seed sd (now None: a baseline just made)."""
    entries, checking = baseline["entries"], now is not None
    now = now or {}
    rows = sorted({tuple(k.split("|")[::2]) for k in [*entries, *now]})
    second = "now" if checking else "sd"
    header = (f"{'model':<30} {'task':<10} "
              + " ".join(f"{s + ' baseline±tol':>20} {s[:1] + ' ' + second:>9} {'change':>7}"
                         for s in SPLITS) + "  status")
    print(header)
    print("-" * len(header))
    for model, task in rows:
        keys = [key(model, split, task) for split in SPLITS]
        status = [f"FAIL {split}" for split, k in zip(SPLITS, keys) if k in failing]
        status += [f"better {split}" for split, k in zip(SPLITS, keys)
                   if k in entries and now.get(k) is not None and entries[k]["mean"] is not None
                   and now[k] - entries[k]["mean"] > entries[k]["tolerance"]]
        if checking and not any(k in entries for k in keys):
            status = ["new"]
        elif checking and any(k in entries and k not in now for k in keys):
            status.append("not measured")
        cells = " ".join(_cells(entries.get(k), now.get(k), checking) for k in keys)
        print(f"{model:<30} {task:<10} {cells}  "
              + (", ".join(status) or ("ok" if checking else "")))
