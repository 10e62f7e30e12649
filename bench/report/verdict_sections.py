"""The report's verdicts in words: who was compared and how chosen, what test says about the
pair (combined interval, corrected p-value, smallest detectable difference), and the protocol
section that lists every tested hypothesis. Rules are ccp.stats'; choices bench.report.verdicts'.
"""

from __future__ import annotations

from bench.report import fmt
from bench.report import verdicts as hypotheses
from bench.report.render import Bullets, Heading, Para, Table
from bench.report.results import Run
from ccp import stats
from ccp.tasks import TASK_ORDER, TASKS

NOT_SIGNIFICANT = "†"


def seed_words(run: Run) -> str:
    n = len(run.seeds)
    return (f"the spread between its {n} training seeds" if n > 1 else
            "no training variance (one seed)")


def unit_words(run: Run) -> str:
    rules = sorted({t.resampling_rule for m in run.models for t in m.tasks.values()
                    if t.resampling_rule})
    return "; ".join(rules) if rules else "requests (records older than the unit rule)"


def _user_shares(run: Run) -> str:
    shares = {}
    for m in run.models:
        for t, r in m.tasks.items():
            if r.user_share is not None:
                shares.setdefault(t, r.user_share)
    if not shares:
        return ""
    return "; rows resampled by user: " + ", ".join(
        f"{TASKS[t].short} {fmt.pct(shares[t], 0)}" for t in TASK_ORDER if t in shares)


def _p(p) -> str:
    if fmt.missing(p):
        return fmt.DASH
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def chosen_phrase(v: hypotheses.Verdict) -> str:
    """Who was compared and how they were chosen."""
    roles = " and ".join(v.kinds)
    if v.chosen_on == "validation":
        picked = (f"`{v.a.model}` ({v.a.group}, validation AUC {fmt.auc(v.a.valid_auc[v.task])}) "
                  f"and `{v.b.model}` ({v.b.group}, {fmt.auc(v.b.valid_auc[v.task])}), chosen "
                  "on validation")
    else:
        picked = (f"`{v.a.model}` ({v.a.group}) and `{v.b.model}` ({v.b.group}), **chosen on "
                  "test**: this run has no validation records, so the choice favours them")
    return f"{roles}: {picked}"


def measure_phrase(v: hypotheses.Verdict) -> str:
    """The combined interval, the corrected p-value, the detectable difference and where the
    observed difference lies against it: every verdict line carries all four."""
    e = v.estimate
    if e is None or e.se is None:
        return "not testable (no shared seeds or no bootstrap replicates)"
    low, high = e.interval()
    seeds = (f"{e.n_seeds} seeds and resampling combined" if e.seeds_included else
             "resampling only: **training variance not included** (one seed)")
    verdict = ("significant" if v.significant else "**not significant**")
    detect = v.detectable
    if v.too_small_to_see and v.significant:
        where = "the observed difference is below it, and seen nonetheless (below 80% power)"
    elif v.too_small_to_see:
        where = "the observed difference is below it: **too small to see here**"
    else:
        # Above it, the uncorrected test rejects; only the correction can keep it out.
        where = ("the observed difference is above it" + (
            " (not significant only after the correction for the report's several tests)"
            if not v.significant else ""))
    return (f"test AUC difference {fmt.signed(e.value)} (95% CI {fmt.interval(low, high)}, "
            f"{seeds}); {stats.CORRECTION}-corrected p = {_p(v.p_adjusted)}: {verdict}; "
            f"smallest detectable difference {fmt.num(detect)} (80% power, 5% level): {where}")


def significance_table(run: Run, verdicts: list) -> list:
    rows = []
    for v in verdicts:
        e = v.estimate
        low, high = e.interval() if e is not None else (None, None)
        mark = {True: "yes", False: f"no {NOT_SIGNIFICANT}", None: "not testable"}[
            v.significant]
        below = {True: "yes: too small to see here", False: "no", None: fmt.DASH}[
            v.too_small_to_see]
        if v.too_small_to_see and v.significant:
            below = "yes, seen nonetheless"
        rows.append([TASKS[v.task].short, " and ".join(v.kinds),
                     f"`{v.a.model}` ({fmt.auc(v.a.valid_auc.get(v.task))})",
                     f"`{v.b.model}` ({fmt.auc(v.b.valid_auc.get(v.task))})",
                     ", ".join(f"`{m}`" for m in v.same_as_a) or fmt.DASH,
                     fmt.signed(v.difference), fmt.interval(low, high), _p(v.p_value),
                     _p(v.p_adjusted), mark, fmt.num(v.detectable), below,
                     "yes" if e is not None and e.seeds_included else "**no** (one seed)"])
    if not rows:
        return []
    return [Heading(3, "Verdicts: chosen on validation, measured on test", "significance"),
            Para("Each row is one tested hypothesis (listed again under Statistical "
                 "protocol). The pair is chosen on the validation split (validation AUC in "
                 "brackets); the difference, its interval and p-value are on test. Models "
                 "with the same scores as the first (e.g. a product model that reuses its "
                 "CTR model) are named apart and not tested against it."),
            Table(["task", "comparison", "first (valid AUC)", "second (valid AUC)",
                   "same scores as first", "test AUC difference", "95% CI (seeds + resampling)",
                   "p", f"p, {stats.CORRECTION}", "significant", "smallest detectable",
                   "observed below it?", "seed variance included"], rows,
                  "llllllrrrrlrl", id="verdicts-table")]


def verdict_sentence(v: hypotheses.Verdict, cost_phrase) -> str:
    """One verdict in words: the pair chosen on validation, then what test says about it."""
    text = f"{chosen_phrase(v)[0].upper()}{chosen_phrase(v)[1:]}; {measure_phrase(v)}"
    if hypotheses.GROUPS in v.kinds and v.significant is False:
        text += " (no group clearly wins this task here)"
    if hypotheses.GROUPS in v.kinds:
        text += f"; {cost_phrase(v.a, v.b)}; training {fmt.seconds(v.a.train_s)} vs " \
                f"{fmt.seconds(v.b.train_s)}"
    return text + "."


def protocol(run: Run) -> list:
    """The statistical protocol as applied in this run, and every hypothesis it tested."""
    verdicts = hypotheses.run_verdicts(run)
    detect = hypotheses.detectable_by_task(run)
    items = [
        f"Resampling unit: {unit_words(run)} (ccp.stats: user where the data has one, else "
        "request, else row; every model gets the same resamples, so differences are paired)"
        + _user_shares(run) + ".",
        f"Seeds: {fmt.seeds(run.seeds)}; "
        + ("every interval and test combines the spread between seeds with resampling "
           f"({stats.METHOD})." if len(run.seeds) > 1 else
           "**one seed: training variance is not included** in any interval or test."),
        "Choice: every \"best\" (overall and per group) is the highest mean AUC on the "
        "validation split; the test split only measures the chosen models.",
        f"Correction: {stats.CORRECTION} (step-down, family-wise error 5%) over the "
        f"{sum(v.p_value is not None for v in verdicts)} hypotheses below.",
        "Power: the smallest detectable difference is the true AUC difference a paired test "
        "at the 5% level (before correction) detects with 80% power, (t(0.975, df) + t(0.8, "
        "df)) times the standard error of the paired difference measured in this run.",
    ]
    blocks = [Heading(2, "Statistical protocol", "protocol"), Bullets(items)]
    if verdicts:
        blocks.append(Table(["#", "hypothesis (H0)", "role", "p", f"p, {stats.CORRECTION}"],
                            [[str(i), v.hypothesis, " and ".join(v.kinds), _p(v.p_value),
                              _p(v.p_adjusted)] for i, v in enumerate(verdicts, start=1)],
                            "lllrr", id="hypotheses-table"))
    if detect:
        blocks.append(Para("Smallest detectable difference per task: from the median standard "
                           "error (and degrees of freedom) of the paired differences of every "
                           "pair of models here (the constant floor left out)."))
        blocks.append(Table(
            ["task", "pairs", "median standard error", "df", "smallest detectable difference",
             "seed variance included"],
            [[TASKS[t].short, str(d["pairs"]), fmt.num(d["se"], 5),
              "∞" if d["df"] == float("inf") else f"{d['df']:.1f}", fmt.num(d["detectable"]),
              "yes" if d["seeds_included"] else "**no** (one seed)"]
             for t, d in detect.items()], "lrrrrl", id="detectable-table"))
    return blocks
