"""Runs registered models on one data set and writes one flat record per (model, task, seed).

The harness owns everything a model could otherwise do differently: seeding, thread limits,
timing (fit and predict timed apart, data loading excluded), and evaluation on the exact row
sets of ccp.tasks. A model that fails becomes a record with its error; the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ccp import metrics, stats
from ccp.model import FitContext, check_outputs, seed_everything
from ccp.tasks import MAIN_TASKS, TASKS
from ccp.timing import Stopwatch

RESULTS_FILE = "results.jsonl"
META_FILE = "meta.json"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bench_version() -> str:
    from bench import __version__

    return __version__


def _log(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


# First in every line, so that a line cut short by a crash still says whose record it was.
IDENTITY_KEYS = ("kind", "model", "seed", "task")


def record_line(record: dict) -> str:
    first = {k: record[k] for k in IDENTITY_KEYS if k in record}
    rest = {k: record[k] for k in sorted(record) if k not in first}
    return json.dumps({**first, **rest}) + "\n"


def append_records(run_dir: Path, records: list[dict]) -> None:
    """Append records as JSON lines in one write, then flush them to disk.

    One write of whole lines to a file opened for appending: concurrent appenders never
    interleave within a line, and a process killed mid-write leaves at most one cut last line,
    which read_records drops with a warning and --resume removes (trim_for_resume)."""
    data = "".join(record_line(r) for r in records).encode()
    fd = os.open(Path(run_dir) / RESULTS_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a cut line stays a line of its own
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def append_record(run_dir: Path, record: dict) -> None:
    append_records(run_dir, [record])


def _cut_line_name(text: str) -> str:
    """Who a line cut mid-write belonged to, from the identity keys it begins with."""
    import re

    found = [f"{key} {match.group(1)}" for key in IDENTITY_KEYS
             if (match := re.search(rf'"{key}": ("[^"]*"|-?\d+)[,}}]', text))]
    return ", ".join(found) or "its identity keys were cut too"


def _read_lines(path: Path) -> tuple[list[tuple[bytes, dict]], str | None]:
    """(raw line, record) of every whole line, and a warning naming each line that is not
    (the last one when a kill cut it mid-write; an earlier one if a writer appended after it)."""
    lines = path.read_bytes().split(b"\n")
    parsed, warnings = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed.append((line, json.loads(line)))
        except ValueError:
            how = "was cut mid-write" if number == len(lines) else "is not a whole JSON record"
            warnings.append(f"warning: {path} line {number} {how} ({len(line)} bytes; "
                            f"{_cut_line_name(line.decode(errors='replace'))}): that partial "
                            "record is dropped")
    return parsed, "\n".join(warnings) or None


def read_records(run_dir: Path) -> list[dict]:
    """Every record of a run folder; a last line cut mid-write (a killed run) is dropped with
    a warning that names it."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        return []
    parsed, warning = _read_lines(path)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return [record for _, record in parsed]


def complete_pairs(records: list[dict]) -> frozenset:
    """(model, seed) pairs with an error-free accuracy record for every task."""
    tasks: dict[tuple, set] = {}
    for r in records:
        if r.get("kind", "accuracy") == "accuracy" and r.get("error") is None:
            tasks.setdefault((r["model"], r["seed"]), set()).add(r.get("task"))
    return frozenset(pair for pair, seen in tasks.items() if seen >= set(TASKS))


def trim_for_resume(run_dir: Path) -> frozenset:
    """Before --resume appends: remove a cut last line and the records of pairs cut between
    their task lines (they run again), rewriting the file atomically; return the complete
    (model, seed) pairs, which need not run again."""
    from ccp import atomic

    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        return frozenset()
    parsed, warning = _read_lines(path)
    done = complete_pairs([record for _, record in parsed])
    kept = [(line, r) for line, r in parsed
            if r.get("kind", "accuracy") != "accuracy" or r.get("error") is not None
            or (r.get("model"), r.get("seed")) in done]
    if len(kept) < len(parsed) or warning or not path.read_bytes().endswith(b"\n"):
        if warning:
            print(warning.replace("is dropped", "is removed; its model runs again"),
                  file=sys.stderr, flush=True)
        partial = sorted({(r.get("model"), r.get("seed")) for _, r in parsed} - done
                         - {(r.get("model"), r.get("seed")) for _, r in kept})
        for model, seed in partial:  # printed even with --quiet, as the warning above
            print(f"note: {model} seed {seed} has records for some tasks only (cut by a "
                  "crash); they are removed and it runs again", file=sys.stderr, flush=True)
        atomic.write_bytes(path, b"".join(line + b"\n" for line, _ in kept))
    return done


def evaluate(outputs: dict[str, np.ndarray], split, fingerprint: str, n_bootstrap: int,
             tasks=tuple(TASKS), split_name: str = "test") -> dict[str, dict]:
    """Metric fields per task, each on the rows ccp.tasks defines for it. Intervals
    resample ccp.stats' unit; n_bootstrap 0 (the validation split, which only chooses
    models) skips the bootstrap and the secondary metrics."""
    results = {}
    for name in tasks:
        task = TASKS[name]
        rows = task.rows(split.click)
        labels = task.labels(split.click, split.purchase)[rows]
        scores = outputs[task.prediction][rows]
        units = stats.resampling_units(split, rows)
        replicates = np.zeros(0)
        if n_bootstrap:
            replicates = metrics.bootstrap_aucs(labels, scores, units.ids, n_bootstrap,
                                                stats.bootstrap_seed(fingerprint, name,
                                                                     split_name))
        low, high = metrics.percentile_interval(replicates)
        fields = {
            "task": name,
            "task_definition": task.definition,
            "auc": metrics.auc(labels, scores),
            "auc_ci_low": low,
            "auc_ci_high": high,
            "auc_bootstrap": [round(float(x), 6) for x in replicates],
            "n_bootstrap": n_bootstrap,
            "ci_method": f"percentile bootstrap over {units.rule}, 95%, this seed only",
            "resampling_unit": units.unit,
            "resampling_rule": units.rule,
            "n_units": units.n_units,
            "resampling_user_share": units.user_share,
            "logloss": metrics.log_loss(labels, scores),
            "n_rows": int(rows.sum()),
            "n_positives": int(labels.sum()),
            "n_requests": int(len(np.unique(split.request[rows]))),
            "mean_prediction": float(scores.mean()) if len(scores) else float("nan"),
            "label_rate": float(labels.mean()) if len(labels) else float("nan"),
            "oracle_auc": None,
            "oracle_gap": None,
        }
        if n_bootstrap:
            fields.update(_secondary_metrics(labels, scores, split, rows))
        if split.p_click is not None:
            truth = task.truth(split.p_click, split.p_conversion)[rows]
            fields["oracle_auc"] = metrics.auc(labels, truth)
            fields["oracle_gap"] = fields["oracle_auc"] - fields["auc"]
        results[name] = fields
    return results


# GAUC groups by user id (field 101). Code 1 pools every user rarer than --min-count into one
# "user", so its rows (and absent users, code 0) are left out of GAUC rather than scored as one.
GAUC_RULE = ("per-user AUC (field 101) weighted by the user's rows; users with one class only, "
             "rare users (code 1, pooled) and absent users (code 0) are left out")


def _secondary_metrics(labels, scores, split, rows) -> dict:
    """GAUC, calibration and ROC points: what the report shows beside the AUC."""
    from ccp.data.schema import CODE_RARE

    users = split.user_codes[split.request[rows], 0]
    known = users > CODE_RARE
    gauc = metrics.group_auc(labels[known], scores[known], users[known])
    share_known = float(known.mean()) if len(known) else 0.0
    fpr, tpr = metrics.roc_points(labels, scores)
    observed = float(labels.mean()) if len(labels) else float("nan")
    predicted = float(scores.mean()) if len(scores) else float("nan")
    return {
        "gauc": gauc["gauc"],
        "gauc_users": gauc["gauc_groups"],
        # Share of the task's rows that took part: known user and both classes present.
        "gauc_row_share": gauc["gauc_row_share"] * share_known,
        "gauc_rule": GAUC_RULE,
        "calibration_ratio": predicted / observed if observed > 0 else float("nan"),
        "reliability": metrics.reliability_bins(labels, scores),
        "reliability_rule": "[mean predicted, observed rate, rows] per bin of equal row count",
        "roc_fpr": fpr,
        "roc_tpr": tpr,
    }


def _nan_to_none(record: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in record.items()}


def train_rows_of(train, profile):
    """The train split every model of a run fits on (profile.max_train_rows; 0 = all rows)."""
    from ccp.data.split import capped_rows

    rows = capped_rows(train.request_key, np.asarray(train.request),
                       getattr(profile, "max_train_rows", 0))
    return train if rows is None else train.take(rows, name=f"{train.name}-capped")


def fit_model(spec, fit_view, profile, seed: int, threads: int, progress: bool = True,
              extra: dict | None = None, config: dict | None = None, on_validation=None):
    """The one way a model is fitted (run_one, tuning, `fitted`'s callers, the gbdt command):
    seeded, threads limited, fit timed (ccp.timing).

    fit_view holds train and validation only (test None). config: a tuned configuration
    (bench.tuned_config), its settings split by target: "model" (constructor keywords),
    "profile" (budget fields for this fit), "neural" (neural settings; --set's win).
    Returns (model, train_s); exceptions propagate."""
    from threadpoolctl import threadpool_limits

    if fit_view.test is not None:
        raise ValueError("a model is fitted on train and validation only (test must be None)")
    settings = (config or {}).get("settings") or {}
    seed_everything(seed)
    model = spec.build(**settings.get("model", {}))
    ctx = FitContext(seed=seed, threads=threads,
                     profile=profile.with_overrides(settings.get("profile", {})),
                     progress=progress, extra={**settings.get("neural", {}), **(extra or {})},
                     on_validation=on_validation)
    with threadpool_limits(limits=threads), Stopwatch() as watch:
        model.fit(fit_view, ctx)
    return model, watch.wall_s


def fitted(spec, data, profile, seed: int, threads: int, model_settings: dict | None = None,
           **options):
    """fit_model on a whole data set, its test split set aside first; the model only (for
    callers that measure something other than the fit: latency, memory, tests).
    model_settings: constructor keywords over the spec's (a tuned configuration's "model")."""
    if model_settings:
        options["config"] = {"settings": {"model": model_settings}}
    return fit_model(spec, dataclasses.replace(data, test=None), profile, seed, threads,
                     **{"progress": False, **options})[0]


def run_one(spec, data, profile, seed: int, threads: int, progress: bool = True,
            extra: dict | None = None, engine: str = "local", workers: int = 1,
            on_fitted=None, config: dict | None = None) -> list[dict]:
    """Fit and evaluate one model with one seed; records for every task (or one error record).

    engine / workers: where the model trained (bench.distributed): "local" in this process,
    "dask" or "torchrun" on `workers` workers; a model that knows better sets `.workers`.
    config: the tuned configuration to fit with and record (bench.tuned_config), or None.
    on_fitted(spec, seed, model): called with the fitted model once it is evaluated (the run's
    serving latency, bench.run_latency), so that nothing is fitted twice or kept after."""
    from threadpoolctl import threadpool_limits

    from bench.tuned_config import default

    config = config or default("no configuration was looked up for this fit (defaults)")
    base = {"kind": "accuracy", "model": spec.key, "name": spec.name, "family": spec.family,
            "group": spec.group, "dataset": data.name, "fingerprint": data.fingerprint,
            "profile": profile.name,
            "split": "test", "seed": seed, "threads": threads, "version": bench_version(),
            "engine": engine, "workers": workers,
            **{k: v for k, v in (config or {}).items() if k != "settings"}}
    # The model never sees the test split while fitting, and every family trains on the same
    # rows: the profile's cap, if any, keeps the same whole requests for every model and seed.
    fit_view = dataclasses.replace(data, train=train_rows_of(data.train, profile), test=None)
    base["train_rows"] = len(fit_view.train)
    try:
        model, train_s = fit_model(spec, fit_view, profile, seed, threads, progress, extra,
                                   config)
        with threadpool_limits(limits=threads):
            with Stopwatch() as watch:
                outputs = model.predict(data.test)
            predict_s = watch.wall_s
            # Validation scores choose the report's "best" models (ccp.stats); untimed.
            valid_outputs = check_outputs(model.predict(data.valid), len(data.valid))
        base["workers"] = getattr(model, "workers", workers)
        outputs = check_outputs(outputs, len(data.test))
        per_split = {"test": evaluate(outputs, data.test, data.fingerprint, profile.n_bootstrap),
                     "valid": evaluate(valid_outputs, data.valid, data.fingerprint, 0,
                                       split_name="valid")}
    except Exception as error:  # a failed model is a row, not a crash
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        _log(f"  FAILED {spec.key} seed {seed}: {detail}", progress)
        return [{**base, "task": None, "auc": None, "error": detail,
                 "traceback": traceback.format_exc(limit=8), "utc": utc_now()}]
    how = getattr(model, "OUTPUTS_HOW", {})
    n_params = model.n_params() if hasattr(model, "n_params") else None
    records = []
    for split_name, task, fields in [(s, t, f) for s, per_task in per_split.items()
                                     for t, f in per_task.items()]:
        prediction = TASKS[task].prediction
        records.append(_nan_to_none({
            **base, **fields, "split": split_name, "prediction": prediction,
            "prediction_how": how.get(prediction),
            "train_s": train_s, "predict_s": predict_s, "predict_rows": len(data.test),
            "n_params": n_params, "model_info": getattr(model, "info", None),
            **{f"inputs_{k}": v for k, v in getattr(model, "INPUTS", {}).items()},
            "utc": utc_now(), "error": None}))
    if on_fitted is not None:
        on_fitted(spec, seed, model)
    return records


def run_suite(specs, data, profile, seeds, run_dir: Path, threads: int,
              progress: bool = True, extra: dict | None = None, engine: str = "local",
              workers: int = 1, done: frozenset = frozenset(), on_fitted=None,
              configs: dict | None = None, jobs: int = 1) -> list[dict]:
    """Every (model, seed) pair not in `done` (pairs a resumed folder already holds);
    `on_fitted` as in run_one; configs: per model key, the configuration to fit with and
    record (bench.tuned_config); jobs: pairs fitted at once (bench.run_jobs; local engine)."""
    run_dir = Path(run_dir)
    all_records = []
    pairs = [(spec, seed) for spec in specs for seed in seeds if (spec.key, seed) not in done]
    total = len(pairs)
    finished = 0

    def keep(spec, seed, records) -> None:
        nonlocal finished
        finished += 1
        append_records(run_dir, records)  # one write: all of a pair's lines or a cut tail
        all_records.extend(records)
        ok = [r for r in records if r.get("error") is None]
        if ok:
            aucs = "  ".join(f"{r['task']} {r['auc']:.4f}" for r in ok
                             if r["task"] in MAIN_TASKS and r["auc"] is not None
                             and r["split"] == "test")
            # With several jobs the pairs finish out of order: each line names its pair.
            pair = "" if jobs == 1 else f"[{finished}/{total}] {spec.key} seed {seed}: "
            _log(f"    {pair}fit {ok[0]['train_s']:.1f}s predict {ok[0]['predict_s']:.2f}s  "
                 f"AUC {aucs}", progress)

    if jobs > 1 and engine == "local" and len(pairs) > 1:
        from bench.run_jobs import run_pairs

        _log(f"{total} fits, {jobs} at a time ({threads} thread(s) each)", progress)
        run_pairs(run_one, pairs, data, profile, threads, jobs, extra, configs, on_fitted, keep)
        return all_records
    for step, (spec, seed) in enumerate(pairs, 1):
        _log(f"[{step}/{total}] {spec.key} seed {seed} ...", progress)
        keep(spec, seed, run_one(spec, data, profile, seed, threads, progress, extra, engine,
                                 workers, on_fitted, (configs or {}).get(spec.key)))
    return all_records
