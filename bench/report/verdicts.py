"""The hypotheses a report tests, chosen on validation and measured on test (ccp.stats rules).

Per main task, at most two hypotheses: the best model overall against the runner-up, and the
best model of the two leading groups against each other (neural against GBDT where both ran).
"Best" is always the highest mean validation AUC; the test split only measures the pair. Every
p-value is Holm-corrected over all the report's hypotheses together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.report.results import ModelResult, Run, same_scores
from ccp import stats
from ccp.tasks import MAIN_TASKS

BEST = "best vs runner-up"
GROUPS = "best of group vs best of group"


@dataclass
class Verdict:
    task: str
    kinds: tuple[str, ...]  # BEST and/or GROUPS (one hypothesis can serve both)
    a: ModelResult  # ranked first on `chosen_on`
    b: ModelResult
    chosen_on: str  # "validation", or "test" for runs without validation records
    estimate: stats.Estimate | None  # test AUC(a) - AUC(b), seeds and resampling combined
    same_as_a: tuple[str, ...] = ()  # models with a's very scores, not tested against it
    p_adjusted: float | None = None  # Holm, over every verdict of the report

    @property
    def hypothesis(self) -> str:
        return f"{self.task}: test AUC of `{self.a.model}` = test AUC of `{self.b.model}`"

    @property
    def difference(self) -> float | None:
        return None if self.estimate is None else self.estimate.value

    @property
    def p_value(self) -> float | None:
        return None if self.estimate is None else self.estimate.p_value

    @property
    def significant(self) -> bool | None:
        return None if self.p_adjusted is None else self.p_adjusted < stats.ALPHA

    @property
    def detectable(self) -> float | None:
        return None if self.estimate is None else self.estimate.detectable()

    @property
    def too_small_to_see(self) -> bool | None:
        """The observed difference is below what this run could detect (80% power, 5%)."""
        if self.detectable is None:
            return None
        return abs(self.difference) < self.detectable


def eligible(models: list[ModelResult], task: str) -> list[ModelResult]:
    """Models with a test AUC on `task` that model it (not a constant output)."""
    return [m for m in models if m.auc(task) is not None and not m.tasks[task].constant_output]


def chosen_on(models: list[ModelResult], task: str) -> str:
    return "validation" if all(m.valid_auc.get(task) is not None for m in models) else "test"


def by_choice(models: list[ModelResult], task: str, on: str) -> list[ModelResult]:
    """Best first, on the split the choice is made on (validation; test only without it)."""
    def key(m):
        value = m.valid_auc.get(task) if on == "validation" else m.auc(task)
        return value if value is not None and math.isfinite(value) else -math.inf

    rest = {m.model: m for m in models}
    order = []
    while rest:  # stats.best_on_validation, applied repeatedly: one rule for every choice
        best = stats.best_on_validation({k: key(m) for k, m in rest.items()})
        best = best if best is not None else min(rest)
        order.append(rest.pop(best))
    return order


def group_leaders(models: list[ModelResult], task: str, on: str) -> dict[str, ModelResult]:
    leaders: dict[str, ModelResult] = {}
    for m in by_choice([m for m in eligible(models, task) if m.group != "floor"], task, on):
        leaders.setdefault(m.group, m)
    return leaders


def _pair(task, kind, a, b, on, same=()) -> Verdict:
    return Verdict(task, (kind,), a, b, on,
                   stats.paired_difference(a.tasks[task].scores, b.tasks[task].scores), same)


def task_verdicts(models: list[ModelResult], task: str) -> list[Verdict]:
    have = eligible(models, task)
    on = chosen_on(have, task)
    order = by_choice(have, task, on)
    out = []
    if len(order) >= 2:
        best = order[0]
        same = tuple(m.model for m in order[1:] if same_scores(best, m, task))
        others = [m for m in order[1:] if m.model not in same]
        if others:
            out.append(_pair(task, BEST, best, others[0], on, same))
    leaders = group_leaders(models, task, on)
    if len(leaders) >= 2:
        pair = ("neural", "GBDT") if {"neural", "GBDT"} <= set(leaders) else list(leaders)[:2]
        a, b = by_choice([leaders[g] for g in pair], task, on)
        twin = next((v for v in out if {v.a.model, v.b.model} == {a.model, b.model}), None)
        if twin is not None:
            twin.kinds += (GROUPS,)
        elif not same_scores(a, b, task):
            out.append(_pair(task, GROUPS, a, b, on))
    return out


def run_verdicts(run: Run) -> list[Verdict]:
    """Every hypothesis of the report, with Holm-adjusted p-values over all of them."""
    verdicts = [v for task in MAIN_TASKS for v in task_verdicts(run.models, task)]
    for v, p in zip(verdicts, stats.holm([v.p_value for v in verdicts]), strict=True):
        v.p_adjusted = p
    return verdicts


def detectable_by_task(run: Run) -> dict[str, dict]:
    """Per task, the typical smallest detectable difference between two models of this run:
    from the median standard error (and degrees of freedom) of the paired differences of
    every pair of models that model the task."""
    out = {}
    for task in MAIN_TASKS:
        have = [m for m in eligible(run.models, task) if m.group != "floor"]
        estimates = [stats.paired_difference(a.tasks[task].scores, b.tasks[task].scores)
                     for i, a in enumerate(have) for b in have[i + 1:]
                     if not same_scores(a, b, task)]
        estimates = [e for e in estimates if e is not None and e.se is not None]
        if not estimates:
            continue
        se = float(np.median([e.se for e in estimates]))
        df = float(np.median([e.df for e in estimates]))
        out[task] = {"pairs": len(estimates), "se": se, "df": df,
                     "detectable": stats.detectable_difference(se, df),
                     "seeds_included": all(e.seeds_included for e in estimates)}
    return out
