"""The regime study's numbers, from its records only: at each grid point, each model's AUC lift
over the reference (the multiplied GBDT pair) with the paired bootstrap interval of the main
report (bench.report.results.paired_interval), the verdict it implies, and the oracle ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report.results import load_run, paired_interval
from bench.report.sections import achievable_auc
from ccp.atomic import read_json

STUDY_TASKS = ("cvr", "ctcvr")
WIN, LOSE, TIE = "wins", "loses", "ties"


@dataclass
class Lift:
    point: dict            # cvr, relatedness, train_rows, run
    model: str
    task: str
    model_auc: float | None
    reference_auc: float | None
    lift: float | None     # model AUC - reference AUC (seed means)
    ci_low: float | None   # 95% paired bootstrap interval of the lift
    ci_high: float | None
    oracle_auc: float | None  # the true probabilities' AUC on the same test rows
    n_positives: int | None   # test positives of the task (few = wide intervals)
    # The truth with the unobservable noise integrated out, scored like a model on the same
    # rows (the data's info, bench.report.sections.achievable_auc): what a model can reach.
    achievable_auc: float | None = None

    @property
    def verdict(self) -> str | None:
        """wins / loses when the interval excludes 0, ties when it covers 0."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return WIN if self.ci_low > 0 else LOSE if self.ci_high < 0 else TIE


@dataclass
class Study:
    study_dir: Path
    spec: dict               # study.json
    lifts: list[Lift]
    missing: list[str]       # points whose run folder has no usable records
    train_rows: dict[str, int | None]  # run -> rows the models trained on

    @property
    def reference(self) -> str:
        return self.spec["reference"]

    def models(self) -> list[str]:
        return sorted({x.model for x in self.lifts})


def load_study(study_dir: str | Path) -> Study:
    study_dir = Path(study_dir)
    spec_path = study_dir / "study.json"
    spec = read_json(spec_path, f"is {study_dir} a study folder?")
    lifts, missing, rows = [], [], {}
    for point in spec["points"]:
        run_dir = study_dir / point["run"]
        if not (run_dir / "results.jsonl").exists():
            missing.append(point["run"])
            continue
        run = load_run(run_dir)
        keys = {m.model: m for m in run.models}
        reference = keys.get(spec["reference"])
        if reference is None:
            missing.append(point["run"])
            continue
        rows[point["run"]] = _train_rows(run_dir)
        for key, model in sorted(keys.items()):
            if key == spec["reference"]:
                continue
            for task in STUDY_TASKS:
                diff, low, high = paired_interval(model, reference, task)
                ref_task = reference.tasks.get(task)
                lifts.append(Lift(point, key, task, model.auc(task), reference.auc(task),
                                  diff, low, high,
                                  *((ref_task.oracle_auc, ref_task.n_positives,
                                     achievable_auc(run, task, ref_task))
                                    if ref_task is not None else (None, None, None))))
    return Study(study_dir, spec, lifts, missing, rows)


def _train_rows(run_dir: Path) -> int | None:
    """Train rows the point's models saw (records' train_rows; capped by the train file)."""
    from bench.harness import read_records

    seen = {r.get("train_rows") for r in read_records(run_dir) if r.get("train_rows")}
    return max(seen) if seen else None
