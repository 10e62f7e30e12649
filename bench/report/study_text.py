"""The study's generated conclusions: sentences computed from the lifts, never typed in.

A comparison at one grid point wins or loses when the 95% paired interval of the lift
excludes 0, and ties when it covers 0 (bench.report.study_lifts.Lift.verdict).
"""

from __future__ import annotations

from collections import Counter

from bench.report import fmt
from bench.report.study_lifts import LOSE, STUDY_TASKS, TIE, WIN, Lift, Study

TASK_NAMES = {"cvr": "CVR AUC (clicked rows)", "ctcvr": "CTCVR AUC"}


def where(point: dict) -> str:
    return (f"conversion rate {point['cvr']:g}, relatedness {point['relatedness']:g}, "
            f"{point['train_rows']:,} train rows")


def tally(lifts: list[Lift]) -> Counter:
    return Counter(x.verdict for x in lifts if x.verdict is not None)


def _counts(c: Counter) -> str:
    return f"{c[WIN]} win(s), {c[LOSE]} loss(es), {c[TIE]} tie(s)"


def _lift_text(x: Lift) -> str:
    return f"{fmt.signed(x.lift)} {fmt.interval(x.ci_low, x.ci_high)}"


def model_sentence(model: str, lifts: list[Lift], reference: str) -> str:
    decided = [x for x in lifts if x.verdict is not None]
    if not decided:
        return f"`{model}`: no interval at any point (no bootstrap replicates recorded)."
    c = tally(decided)
    best = max(decided, key=lambda x: x.lift)
    worst = min(decided, key=lambda x: x.lift)
    return (f"`{model}` {WIN} over `{reference}` at {c[WIN]} of {len(decided)} points, "
            f"{LOSE} at {c[LOSE]}, {TIE} at {c[TIE]}; largest lift {_lift_text(best)} at "
            f"{where(best.point)}; smallest {_lift_text(worst)} at {where(worst.point)}.")


def region_verdict(c: Counter) -> str:
    """The region's verdict: wins (or loses, ties) when it is the majority of the region's
    comparisons; otherwise "are mixed"."""
    total = sum(c.values())
    for verdict, plural in ((WIN, "win"), (LOSE, "lose"), (TIE, "tie")):
        if c[verdict] * 2 > total:
            return plural
    return "are mixed"


def region_sentences(lifts: list[Lift]) -> list[str]:
    regions: dict[tuple, list[Lift]] = {}
    for x in lifts:
        regions.setdefault((x.point["cvr"], x.point["relatedness"]), []).append(x)
    out = []
    for (cvr, rel), group in sorted(regions.items()):
        c = tally(group)
        if sum(c.values()):
            out.append(f"conversion rate {cvr:g}, relatedness {rel:g}: overall the compared "
                       f"models **{region_verdict(c)}** ({_counts(c)} over models and "
                       "sizes).")
    return out


def size_sentence(lifts: list[Lift]) -> str | None:
    by_size: dict[int, Counter] = {}
    for x in lifts:
        if x.verdict is not None:
            by_size.setdefault(x.point["train_rows"], Counter())[x.verdict] += 1
    if not by_size:
        return None
    parts = [f"{n:,} rows: {_counts(c)}" for n, c in sorted(by_size.items())]
    text = "By train size: " + "; ".join(parts) + "."
    if len(by_size) > 1:
        (n0, c0), (n1, c1) = min(by_size.items()), max(by_size.items())
        share0 = c0[WIN] / sum(c0.values())
        share1 = c1[WIN] / sum(c1.values())
        trend = ("grows" if share1 > share0 else "shrinks" if share1 < share0
                 else "does not change")
        text += (f" The share of wins {trend} with data size ({share0:.0%} at {n0:,} rows, "
                 f"{share1:.0%} at {n1:,}).")
    return text


def conclusions(study: Study) -> dict[str, list[str]]:
    """{task: sentences}: per model, per (rate, relatedness) region, and by train size."""
    out = {}
    for task in STUDY_TASKS:
        lifts = [x for x in study.lifts if x.task == task]
        if not lifts:
            continue
        sentences = [model_sentence(m, [x for x in lifts if x.model == m], study.reference)
                     for m in sorted({x.model for x in lifts})]
        sentences += region_sentences(lifts)
        size = size_sentence(lifts)
        if size:
            sentences.append(size)
        out[task] = sentences
    return out
