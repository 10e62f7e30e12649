"""Two run folders side by side: `python -m bench compare RUN_A RUN_B`.

Both runs are read with the report's loader (bench.report.results.load_run), so a model's AUC
is the same seed mean the report shows. Every (model, task) that both runs scored gets B - A
with the report's paired interval: every run on one data fingerprint resamples the same
requests per task (bench.harness.bootstrap_seed), so A's and B's bootstrap replicates pair as
two models of one run do. The verdict reads that interval: better (it lies above 0), worse
(below 0), no detectable change (it holds 0), not testable (no replicates to pair). Runs on
different data are refused: their AUCs measure different things.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from bench.report import fmt
from bench.report.results import Run, load_run, paired_interval
from ccp.tasks import TASK_ORDER


@dataclass
class Row:
    model: str
    task: str
    auc_a: float | None
    auc_b: float | None
    difference: float | None  # B - A
    ci_low: float | None
    ci_high: float | None
    verdict: str
    seeds_a: list[int]
    seeds_b: list[int]
    train_s_ratio: float | None  # B / A, mean training seconds over seeds
    latency_ratio: float | None  # B / A, p50 ms of the report's latency figure
    latency_path: str | None  # the serving path of each side, "A / B"


@dataclass
class Comparison:
    run_a: str
    run_b: str
    fingerprint: str
    interval_rule: str
    rows: list[Row]
    only_in_a: list[str]
    only_in_b: list[str]
    constant_rows: int  # (model, task) pairs that are a constant output in both runs
    notes: list[str]


INTERVAL_RULE = ("95% interval of B - A from ccp.stats.paired_difference (the report's rule): "
                 "paired seed by seed on the seeds both runs have, combining the seeds' "
                 "variance with the paired bootstrap over the resampling unit (the same "
                 "resamples in both runs)")


def verdict(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "not testable"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no detectable change"


def _ratio(b: float | None, a: float | None) -> float | None:
    if b is None or a is None or not a > 0 or not math.isfinite(b):
        return None
    return b / a


def _refuse_other_data(a: Run, b: Run) -> str:
    fa, fb = a.meta.get("fingerprint"), b.meta.get("fingerprint")
    if fa is None or fb is None:
        missing = a.run_dir if fa is None else b.run_dir
        raise ValueError(f"{missing}/meta.json has no data fingerprint: cannot tell whether "
                         "the two runs used the same data")
    if fa != fb:
        raise ValueError(f"the runs used different data: {a.run_dir} has fingerprint {fa} "
                         f"({a.meta.get('dataset')}), {b.run_dir} has {fb} "
                         f"({b.meta.get('dataset')}); their AUCs are on different rows and "
                         "cannot be compared")
    return fa


def compare_runs(dir_a, dir_b) -> Comparison:
    run_a, run_b = load_run(dir_a), load_run(dir_b)
    fingerprint = _refuse_other_data(run_a, run_b)
    models_a = {m.model: m for m in run_a.models}
    models_b = {m.model: m for m in run_b.models}
    rows, constant = [], 0
    for key in sorted(set(models_a) & set(models_b)):
        a, b = models_a[key], models_b[key]
        for task in TASK_ORDER:
            ta, tb = a.tasks.get(task), b.tasks.get(task)
            if ta is None or tb is None or ta.auc is None or tb.auc is None:
                continue
            if ta.constant_output and tb.constant_output:
                constant += 1
                continue
            difference, low, high = paired_interval(b, a, task)
            paths = (f"{(a.latency or {}).get('path')} / {(b.latency or {}).get('path')}"
                     if a.latency and b.latency else None)
            rows.append(Row(
                model=key, task=task, auc_a=ta.auc, auc_b=tb.auc, difference=difference,
                ci_low=low, ci_high=high, verdict=verdict(low, high), seeds_a=ta.seeds,
                seeds_b=tb.seeds, train_s_ratio=_ratio(b.train_s, a.train_s),
                latency_ratio=_ratio((b.latency or {}).get("p50_ms"),
                                     (a.latency or {}).get("p50_ms")),
                latency_path=paths))
    notes = []
    if run_a.n_bootstrap != run_b.n_bootstrap:
        notes.append(f"the runs drew {run_a.n_bootstrap} and {run_b.n_bootstrap} bootstrap "
                     "resamples: replicates do not pair, so no interval is given")
    if min(len(run_a.seeds), len(run_b.seeds)) < 2:
        notes.append("a run has one seed: the interval holds the test sample's noise only, not "
                     "the seed-to-seed noise of training, so a change that only re-draws "
                     "training randomness can show as better or worse (run --seeds 0,1,2)")
    if run_a.seeds != run_b.seeds:
        notes.append(f"seeds differ (A {fmt.seeds(run_a.seeds)}, B {fmt.seeds(run_b.seeds)}): "
                     "each AUC is its run's mean over its own seeds")
    if run_a.meta.get("profile") != run_b.meta.get("profile"):
        notes.append("the runs' profiles (budgets) differ")
    return Comparison(str(run_a.run_dir), str(run_b.run_dir), fingerprint, INTERVAL_RULE, rows,
                      sorted(set(models_a) - set(models_b)),
                      sorted(set(models_b) - set(models_a)), constant, notes)


def to_dict(comparison: Comparison) -> dict:
    return asdict(comparison)


def blocks(comparison: Comparison) -> list:
    from bench.report.render import Bullets, Heading, Para, Table

    counts = {v: sum(r.verdict == v for r in comparison.rows)
              for v in ("better", "worse", "no detectable change", "not testable")}
    table = Table(["model", "task", "AUC A", "AUC B", "B − A", "95% CI", "verdict",
                   "train time B/A", "latency B/A"],
                  [[f"`{r.model}`", r.task, fmt.auc(r.auc_a), fmt.auc(r.auc_b),
                    fmt.signed(r.difference), fmt.interval(r.ci_low, r.ci_high),
                    f"**{r.verdict}**" if r.verdict in ("better", "worse") else r.verdict,
                    _times(r.train_s_ratio), _latency(r)]
                   for r in comparison.rows], "llrrrrlrr")
    notes = [f"A: `{comparison.run_a}`; B: `{comparison.run_b}`; data fingerprint "
             f"`{comparison.fingerprint}`.",
             f"Interval: {comparison.interval_rule}. Verdict: better or worse when the "
             "interval excludes 0, else no detectable change.",
             "Ratios: mean training seconds over seeds, and serving latency p50 at 1,000 "
             "candidates on the path each report shows (— where a run did not measure it)."]
    if comparison.constant_rows:
        notes.append(f"{comparison.constant_rows} (model, task) pairs with a constant output "
                     "in both runs (AUC 0.5 by construction) are left out.")
    if comparison.only_in_a or comparison.only_in_b:
        notes.append("Only in A: " + (", ".join(f"`{m}`" for m in comparison.only_in_a) or "—")
                     + "; only in B: "
                     + (", ".join(f"`{m}`" for m in comparison.only_in_b) or "—") + ".")
    notes += comparison.notes
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return [Heading(1, "ccpbench: run B against run A"),
            Para(f"{len(comparison.rows)} (model, task) rows: {summary or 'none'}."),
            table, Bullets(notes)]


def _times(ratio: float | None) -> str:
    return fmt.DASH if ratio is None else f"{ratio:.2f}×"


def _latency(row: Row) -> str:
    if row.latency_ratio is None:
        return fmt.DASH
    path_a, path_b = row.latency_path.split(" / ")
    return f"{_times(row.latency_ratio)} ({path_a if path_a == path_b else row.latency_path})"
