"""Runs registered models on one data set and writes one flat record per (model, task, seed).

The harness owns everything a model could otherwise do differently: seeding, thread limits,
timing (fit and predict timed apart, data loading excluded), and evaluation on the exact row
sets of bench.metrics. A model that fails becomes a record with its error; the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import metrics
from bench.model import FitContext, check_outputs, seed_everything

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


def append_record(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / RESULTS_FILE, "a") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")


def read_records(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        return []
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def bootstrap_seed(fingerprint: str, task: str) -> int:
    """Same resamples for every model on the same rows, so replicates pair across models."""
    import hashlib

    digest = hashlib.blake2b(f"{fingerprint}:{task}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def evaluate(outputs: dict[str, np.ndarray], split, fingerprint: str, n_bootstrap: int,
             tasks=tuple(metrics.TASKS)) -> dict[str, dict]:
    """Metric fields per task, each on the rows bench.metrics defines for it."""
    results = {}
    for name in tasks:
        task = metrics.TASKS[name]
        rows = task.rows(split.click)
        labels = task.labels(split.click, split.purchase)[rows]
        scores = outputs[task.prediction][rows]
        groups = split.request[rows]
        replicates = metrics.bootstrap_aucs(labels, scores, groups, n_bootstrap,
                                            bootstrap_seed(fingerprint, name))
        low, high = metrics.percentile_interval(replicates)
        fields = {
            "task": name,
            "task_definition": task.definition,
            "auc": metrics.auc(labels, scores),
            "auc_ci_low": low,
            "auc_ci_high": high,
            "auc_bootstrap": [round(float(x), 6) for x in replicates],
            "n_bootstrap": n_bootstrap,
            "ci_method": "percentile bootstrap over requests, 95%",
            "logloss": metrics.log_loss(labels, scores),
            "n_rows": int(rows.sum()),
            "n_positives": int(labels.sum()),
            "n_requests": int(len(np.unique(groups))),
            "mean_prediction": float(scores.mean()) if len(scores) else float("nan"),
            "label_rate": float(labels.mean()) if len(labels) else float("nan"),
            "oracle_auc": None,
            "oracle_gap": None,
        }
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
    from bench.data.schema import CODE_RARE

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


def run_one(spec, data, profile, seed: int, threads: int, progress: bool = True,
            extra: dict | None = None, engine: str = "local", workers: int = 1,
            also_valid: bool = False) -> list[dict]:
    """Fit and evaluate one model with one seed; records for every task (or one error record).

    engine / workers: where the model trained (bench.distributed): "local" in this process,
    "dask" or "torchrun" on `workers` workers; a model that knows better sets `.workers`.
    also_valid: also score the validation split (records with split "valid", after the test
    ones; untimed), for the accuracy gate, which checks both."""
    from threadpoolctl import threadpool_limits

    base = {"kind": "accuracy", "model": spec.key, "name": spec.name, "family": spec.family,
            "dataset": data.name, "fingerprint": data.fingerprint, "profile": profile.name,
            "split": "test", "seed": seed, "threads": threads, "version": bench_version(),
            "engine": engine, "workers": workers}
    # The model never sees the test split while fitting.
    fit_view = dataclasses.replace(data, test=None)
    try:
        seed_everything(seed)
        model = spec.build()
        ctx = FitContext(seed=seed, threads=threads, profile=profile, progress=progress,
                         extra=dict(extra or {}))
        with threadpool_limits(limits=threads):
            started = time.perf_counter()
            model.fit(fit_view, ctx)
            train_s = time.perf_counter() - started
            started = time.perf_counter()
            outputs = model.predict(data.test)
            predict_s = time.perf_counter() - started
        base["workers"] = getattr(model, "workers", workers)
        scored = {"test": (check_outputs(outputs, len(data.test)), data.test)}
        if also_valid:
            with threadpool_limits(limits=threads):
                scored["valid"] = (check_outputs(model.predict(data.valid), len(data.valid)),
                                   data.valid)
        per_split = {name: evaluate(outputs, split, data.fingerprint, profile.n_bootstrap)
                     for name, (outputs, split) in scored.items()}
    except Exception as error:  # a failed model is a row, not a crash
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        _log(f"  FAILED {spec.key} seed {seed}: {detail}", progress)
        return [{**base, "task": None, "auc": None, "error": detail,
                 "traceback": traceback.format_exc(limit=8), "utc": utc_now()}]
    how = getattr(model, "OUTPUTS_HOW", {})
    n_params = model.n_params() if hasattr(model, "n_params") else None
    records = []
    for split_name, per_task in per_split.items():
        timed = {"predict_s": predict_s, "predict_rows": len(data.test)} if (
            split_name == "test") else {"predict_s": None, "predict_rows": None}
        for task, fields in per_task.items():
            prediction = metrics.TASKS[task].prediction
            records.append(_nan_to_none({
                **base, **fields, "split": split_name, "prediction": prediction,
                "prediction_how": how.get(prediction), "train_s": train_s, **timed,
                "n_params": n_params, "model_info": getattr(model, "info", None),
                "utc": utc_now(), "error": None}))
    return records


def run_suite(specs, data, profile, seeds, run_dir: Path, threads: int,
              progress: bool = True, extra: dict | None = None, engine: str = "local",
              workers: int = 1, done: frozenset = frozenset()) -> list[dict]:
    """Every (model, seed) pair not in `done` (pairs a resumed folder already holds)."""
    run_dir = Path(run_dir)
    all_records = []
    pairs = [(spec, seed) for spec in specs for seed in seeds if (spec.key, seed) not in done]
    total = len(pairs)
    step = 0
    for spec, seed in pairs:
        step += 1
        _log(f"[{step}/{total}] {spec.key} seed {seed} ...", progress)
        records = run_one(spec, data, profile, seed, threads, progress, extra, engine,
                          workers)
        for record in records:
            append_record(run_dir, record)
        all_records.extend(records)
        ok = [r for r in records if r.get("error") is None]
        if ok:
            aucs = "  ".join(f"{r['task']} {r['auc']:.4f}" for r in ok
                             if r["task"] in metrics.MAIN_TASKS and r["auc"] is not None)
            _log(f"    fit {ok[0]['train_s']:.1f}s predict {ok[0]['predict_s']:.2f}s  "
                 f"AUC {aucs}", progress)
    return all_records
