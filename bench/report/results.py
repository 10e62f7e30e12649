"""Read a run folder (results.jsonl + meta.json) and condense it into per-model summaries.

Everything the report shows is computed here from the records alone, so any run can be
rebuilt later. Seeds are pooled per (model, task): mean and standard deviation of the AUC over
seeds, and a 95% interval that combines the seeds' spread with the unit-level bootstrap (every
model of a run is resampled with the same units, so subtracting two models' replicates stays
paired); the rules are ccp.stats'. Test records are measured; validation records (split
"valid") only choose which models the verdicts compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccp import stats
from ccp.atomic import read_json
from ccp.tasks import TASK_ORDER

RESULTS_FILE = "results.jsonl"
META_FILE = "meta.json"
LATENCY_CANDIDATES = 1000
REQUIRED_ACCURACY_FIELDS = ("model", "seed", "task", "auc")
REQUIRED_LATENCY_FIELDS = ("model", "n_candidates", "p50_ms")


def group_of(record: dict) -> str:
    """The report group the model's spec declares (ccp.model.GROUPS), as its records say;
    for records written before they said it, the registry's declaration, else the family."""
    if record.get("group"):
        return record["group"]
    from bench.registry import get

    try:
        return get(record["model"]).group
    except KeyError:
        return record.get("family") or "other"


def read_jsonl(path: Path) -> list[dict]:
    """Records of a results file; a bad line is an error naming the file and line."""
    records = []
    with open(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object")
            record["_line"] = number
            records.append(record)
    return records


def _check_fields(path: Path, record: dict, required: tuple[str, ...]) -> None:
    for name in required:
        if name not in record:
            raise ValueError(f"{path}, line {record['_line']}: field {name!r} missing "
                             f"(kind {record.get('kind', 'accuracy')!r})")


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _mean(values) -> float | None:
    finite = _floats(values)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if len(finite) else None


def _std(values) -> float | None:
    finite = _floats(values)
    finite = finite[np.isfinite(finite)]
    return float(finite.std(ddof=1)) if len(finite) >= 2 else None


@dataclass
class TaskResult:
    """One model on one task, pooled over its seeds."""

    task: str
    seeds: list[int]
    auc: float | None
    auc_std: float | None  # over seeds; None with one seed
    auc_per_seed: list[float | None]
    ci_low: float | None
    ci_high: float | None
    replicates: np.ndarray | None  # seed-averaged bootstrap AUCs (paired across models)
    scores: stats.SeedScores  # per seed: AUC and bootstrap replicates
    estimate: stats.Estimate  # seeds and resampling combined (ccp.stats)
    resampling_rule: str | None
    user_share: float | None  # share of the rows resampled by user
    logloss: float | None
    gauc: float | None
    gauc_row_share: float | None
    calibration_ratio: float | None
    mean_prediction: float | None
    label_rate: float | None
    oracle_auc: float | None
    oracle_gap: float | None
    n_rows: int | None
    n_positives: int | None
    n_requests: int | None
    definition: str | None
    prediction_how: str | None
    roc: tuple[list, list] | None  # of the first seed
    reliability: list | None  # of the first seed
    first_seed_ci: tuple[float | None, float | None] = (None, None)

    @property
    def constant_output(self) -> bool:
        """The model does not model this task (e.g. a single-task model's other outputs).

        Seen in the data (every prediction equal: one reliability bin and AUC exactly 0.5) or
        declared by the model ("train CVR prior (constant)" in its OUTPUTS_HOW).
        """
        all_tied = (self.reliability is not None and len(self.reliability) == 1
                    and self.auc == 0.5)
        return all_tied or "(constant" in (self.prediction_how or "").lower()


@dataclass
class ModelResult:
    model: str
    family: str | None
    name: str
    group: str
    seeds: list[int]
    tasks: dict[str, TaskResult]
    train_s: float | None
    train_s_std: float | None
    predict_ms_per_1k: float | None  # batch prediction over the test split, per 1,000 rows
    n_params: int | None
    latency: dict | None  # the latency record at LATENCY_CANDIDATES, if measured
    info: dict | None = None
    inputs: dict | None = None  # what the model sees (its family's INPUTS)
    latency_single: dict | None = None  # the same at one candidate, if measured
    failed_seeds: dict[int, str] = field(default_factory=dict)
    valid_auc: dict[str, float | None] = field(default_factory=dict)  # mean over seeds

    def auc(self, task: str) -> float | None:
        result = self.tasks.get(task)
        return None if result is None else result.auc


@dataclass
class Run:
    run_dir: Path
    meta: dict
    models: list[ModelResult]
    failures: list[dict]  # error records of (model, seed) pairs that never succeeded
    latency_records: list[dict]
    n_bootstrap: int | None

    @property
    def seeds(self) -> list[int]:
        return sorted({s for m in self.models for s in m.seeds}) or list(self.meta.get("seeds",
                                                                                       []))

    def model(self, key: str) -> ModelResult:
        return next(m for m in self.models if m.model == key)


def _pool_task(task: str, records: list[dict]) -> TaskResult:
    records = sorted(records, key=lambda r: r["seed"])
    first = records[0]
    aucs = [r.get("auc") for r in records]
    scores = stats.SeedScores.from_records(records)
    replicate_sets = [r.get("auc_bootstrap") for r in records]
    replicates = None
    if all(replicate_sets) and len({len(x) for x in replicate_sets}) == 1:
        replicates = np.mean([_floats(x) for x in replicate_sets], axis=0)
    estimate = scores.estimate() if scores.aucs else stats.combine([np.nan], None)
    low, high = estimate.interval()
    roc = (first.get("roc_fpr"), first.get("roc_tpr")) if first.get("roc_fpr") else None
    return TaskResult(
        task=task, seeds=[r["seed"] for r in records], auc=_mean(aucs), auc_std=_std(aucs),
        auc_per_seed=aucs, ci_low=low, ci_high=high, replicates=replicates, scores=scores,
        estimate=estimate, resampling_rule=first.get("resampling_rule"),
        user_share=first.get("resampling_user_share"),
        logloss=_mean(r.get("logloss") for r in records),
        gauc=_mean(r.get("gauc") for r in records),
        gauc_row_share=_mean(r.get("gauc_row_share") for r in records),
        calibration_ratio=_mean(r.get("calibration_ratio") for r in records),
        mean_prediction=_mean(r.get("mean_prediction") for r in records),
        label_rate=first.get("label_rate"), oracle_auc=first.get("oracle_auc"),
        oracle_gap=_mean(r.get("oracle_gap") for r in records),
        n_rows=first.get("n_rows"), n_positives=first.get("n_positives"),
        n_requests=first.get("n_requests"), definition=first.get("task_definition"),
        prediction_how=first.get("prediction_how"), roc=roc,
        reliability=first.get("reliability"),
        first_seed_ci=(first.get("auc_ci_low"), first.get("auc_ci_high")))


REDUCED_PRECISION_PATHS = ("int8", "bf16")


def _pick_latency(records: list[dict], n_candidates: int = LATENCY_CANDIDATES) -> dict | None:
    """The latency figure the leaderboard shows for one model, or None when not measured.

    At `n_candidates` candidates, on the fewest threads measured (one serving worker per
    core is the common deployment), the fastest of the model's serving paths (library call,
    compiled trees, ONNX, ...): what a careful deployment would run.
    """
    usable = [r for r in records if r.get("n_candidates") == n_candidates
              and not r.get("error") and r.get("p50_ms") is not None
              # only paths that score like the model's own predict: measured equal, and not
              # reduced precision (int8 and bf16 can fall within 1e-5 where scores are tiny)
              and r.get("max_abs_diff_vs_library") is not None
              and r["max_abs_diff_vs_library"] <= 1e-5
              and not r.get("reduced_precision")
              and r.get("path") not in REDUCED_PRECISION_PATHS]  # records without the flag
    if not usable:
        return None
    fewest = min(r.get("threads") or 0 for r in usable)
    return min((r for r in usable if (r.get("threads") or 0) == fewest),
               key=lambda r: (r["p50_ms"], str(r.get("path"))))


def _check_one_data_set(results_path: Path, meta: dict, records: list[dict]) -> None:
    """Results of other data must not be pooled into one mean or one paired comparison."""
    seen = {}
    for record in records:
        if record.get("fingerprint") is not None:
            seen[record["fingerprint"]] = seen.get(record["fingerprint"], 0) + 1
    expected = meta.get("fingerprint")
    other = {f: n for f, n in seen.items() if f != expected} if expected else {}
    if other or len(seen) > 1 and not expected:
        counts = ", ".join(f"{f} ({n} records)" for f, n in sorted(seen.items()))
        raise ValueError(f"{results_path} holds results of more than one data set (data "
                         f"fingerprints {counts}; meta.json says {expected}): rerun into "
                         "separate folders")


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    results_path, meta_path = run_dir / RESULTS_FILE, run_dir / META_FILE
    if not results_path.exists():
        raise FileNotFoundError(f"{results_path} not found: is {run_dir} a run folder?")
    meta = read_json(meta_path, "a report needs the run's meta.json")
    records = read_jsonl(results_path)

    accuracy, valid, errors, latency = {}, {}, {}, []
    for record in records:
        kind = record.get("kind", "accuracy")
        if kind == "latency":
            _check_fields(results_path, record, REQUIRED_LATENCY_FIELDS)
            latency.append(record)
            continue
        if kind != "accuracy":
            continue  # other helpers' record kinds: not part of this report
        if record.get("error"):
            _check_fields(results_path, record, ("model", "seed"))
            errors[(record["model"], record["seed"])] = record
            continue
        _check_fields(results_path, record, REQUIRED_ACCURACY_FIELDS)
        # A later record of the same (model, seed, task) replaces an earlier one (--resume).
        if record.get("split", "test") == "valid":
            valid[(record["model"], record["seed"], record["task"])] = record
        else:
            accuracy[(record["model"], record["seed"], record["task"])] = record

    _check_one_data_set(results_path, meta, [*accuracy.values(), *valid.values(), *latency])
    succeeded = {(m, s) for m, s, _ in accuracy}
    failures = [r for key, r in sorted(errors.items(), key=lambda kv: (kv[0][0], kv[0][1]))
                if key not in succeeded]
    models = []
    for key in sorted({m for m, _, _ in accuracy}):
        mine = [r for (m, _, _), r in accuracy.items() if m == key]
        by_task = {}
        for record in mine:
            by_task.setdefault(record["task"], []).append(record)
        tasks = {t: _pool_task(t, by_task[t]) for t in TASK_ORDER if t in by_task}
        per_seed = {r["seed"]: r for r in mine}
        first = per_seed[min(per_seed)]
        # seconds per row -> ms per 1,000 rows
        predict = [r["predict_s"] / r["predict_rows"] * 1e6 for r in per_seed.values()
                   if r.get("predict_s") is not None and r.get("predict_rows")]
        name = first.get("name") or key.split("/", 1)[-1]
        models.append(ModelResult(
            model=key, family=first.get("family"), name=name,
            group=group_of(first), seeds=sorted(per_seed),
            tasks=tasks, train_s=_mean(r.get("train_s") for r in per_seed.values()),
            train_s_std=_std(r.get("train_s") for r in per_seed.values()),
            predict_ms_per_1k=_mean(predict), n_params=first.get("n_params"),
            latency=_pick_latency([r for r in latency if r["model"] == key]),
            latency_single=_pick_latency([r for r in latency if r["model"] == key], 1),
            info=first.get("model_info"),
            inputs={k[len("inputs_"):]: v for k, v in first.items() if k.startswith("inputs_")},
            failed_seeds={s: r.get("error", "") for (m, s), r in errors.items()
                          if m == key and (m, s) not in succeeded},
            # Only the seeds measured on test, so the choice and the measure rest on one set.
            valid_auc={t: _mean(r.get("auc") for (m, s, tt), r in valid.items()
                                if m == key and tt == t and s in per_seed)
                       for t in tasks}))
    n_boot = {r.get("n_bootstrap") for r in accuracy.values() if r.get("n_bootstrap")}
    return Run(run_dir=run_dir, meta=meta, models=models, failures=failures,
               latency_records=latency, n_bootstrap=min(n_boot) if n_boot else None)


def paired_interval(b: ModelResult, a: ModelResult, task: str):
    """AUC(b) - AUC(a) and its 95% interval ((None, None, None) when not testable), by the
    report's rule (ccp.stats.paired_difference): what `bench compare` and the regime study
    show for a pair of models."""
    estimate = stats.paired_difference(b.tasks[task].scores, a.tasks[task].scores)
    if estimate is None:
        return None, None, None
    low, high = estimate.interval()
    return estimate.value, low, high


def ranked(models: list[ModelResult], task: str) -> list[ModelResult]:
    """Models that model `task`, best AUC first (name breaks ties, for a stable report)."""
    have = [m for m in models if m.auc(task) is not None
            and not m.tasks[task].constant_output]
    return sorted(have, key=lambda m: (-m.auc(task), m.model))


def same_scores(a: ModelResult, b: ModelResult, task: str) -> bool:
    """Equal AUC and equal AUC on every bootstrap resample: the same scores, as far as the
    records can tell (the resamples are shared by every model of a run)."""
    ta, tb = a.tasks.get(task), b.tasks.get(task)
    if ta is None or tb is None or ta.auc != tb.auc:
        return False
    if ta.replicates is None or tb.replicates is None:
        return False
    return bool(np.array_equal(ta.replicates, tb.replicates, equal_nan=True))
