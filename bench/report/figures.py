"""The report's figures (matplotlib, Agg canvas: no display needed, no global pyplot state).

Each function draws one PNG into the run's figures/ folder and returns a render.Figure whose
caption states the definition, the seeds and the interval, with the plotted numbers as a
table: a figure never shows a number the report does not also give.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.report import fmt
from bench.report.render import Figure, Table
from bench.report.results import (
    LATENCY_CANDIDATES,
    ModelResult,
    Run,
)
from ccp.tasks import MAIN_TASKS, TASK_ORDER, TASKS

GROUP_COLORS = {"GBDT": "#1f77b4", "neural": "#d62728", "linear": "#2ca02c",
                "floor": "#7f7f7f"}
OTHER_COLOR = "#9467bd"
FIGURE_DIR = "figures"


def _color(model: ModelResult) -> str:
    return GROUP_COLORS.get(model.group, OTHER_COLOR)


def _group_handles(models: list[ModelResult]) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=GROUP_COLORS.get(g, OTHER_COLOR), marker="o", ls="", label=g)
            for g in sorted({m.group for m in models})]


def _group_legend(figure, models: list[ModelResult]) -> None:
    handles = _group_handles(models)
    figure.legend(handles=handles, loc="outside lower center", ncols=max(len(handles), 1),
                  fontsize=8)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, run: Run, name: str) -> str:
    folder = run.run_dir / FIGURE_DIR
    folder.mkdir(exist_ok=True)
    # No timestamp in the PNG, so rebuilding a report rewrites identical bytes.
    figure.savefig(folder / name, metadata={"Software": None})
    return f"{FIGURE_DIR}/{name}"


def _log_scale(ax, which: str = "x") -> None:
    """A log axis labelled with plain numbers (0.5, 2, 30), not powers of ten; the 2s and 5s
    between decades are labelled only when the axis spans less than two decades."""
    from matplotlib.ticker import FuncFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis

    def minor(value, _):
        low, high = sorted(axis.get_view_interval())
        narrow = low > 0 and high / low < 100
        return f"{value:g}" if narrow and f"{value:e}"[0] in "25" else ""

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))
    ax.tick_params(axis=which, which="both", labelsize=7)


def _suptitle(figure, run: Run, what: str) -> None:
    figure.suptitle(f"{what}\n{run.meta.get('dataset', '?')} · profile "
                    f"{_profile_name(run)} · seeds {fmt.seeds(run.seeds)}", fontsize=10)


def _profile_name(run: Run) -> str:
    profile = run.meta.get("profile")
    return profile.get("name", "?") if isinstance(profile, dict) else str(profile or "?")


def _interval_line(run: Run) -> str:
    units = sorted({r for m in run.models for r in
                    (t.resampling_rule for t in m.tasks.values()) if r}) or ["requests"]
    return (f"**Interval.** 95%, bootstrap over {'; '.join(units)} ({run.n_bootstrap or '?'} "
            "resamples, the same for every model); with several seeds, combined with the "
            "spread between seeds (ccp.stats; see Statistical protocol).")


def _seed_line(run: Run) -> str:
    return f"**Seeds.** {fmt.seeds(run.seeds)} (points are means over seeds)."


def auc_per_model(run: Run, order: list[ModelResult]) -> Figure:
    tasks = [t for t in TASK_ORDER if any(t in m.tasks for m in order)]
    n_cols = 2 if len(tasks) > 2 else len(tasks)
    n_rows = -(-len(tasks) // n_cols)
    figure = _new_figure(12, 0.8 + n_rows * (1.2 + 0.3 * len(order)))
    rows = []
    y = np.arange(len(order))[::-1]
    for i, task in enumerate(tasks):
        ax = figure.add_subplot(n_rows, n_cols, i + 1)
        for yi, model in zip(y, order):
            result = model.tasks.get(task)
            if result is None or result.auc is None or result.constant_output:
                continue
            low = result.ci_low if result.ci_low is not None else result.auc
            high = result.ci_high if result.ci_high is not None else result.auc
            ax.errorbar(result.auc, yi, xerr=[[result.auc - low], [high - result.auc]],
                        fmt="o", color=_color(model), capsize=3, ms=5)
            per_seed = [a for a in result.auc_per_seed if a is not None]
            if len(per_seed) > 1:
                ax.plot(per_seed, [yi] * len(per_seed), "x", color=_color(model), ms=4,
                        alpha=0.6)
            rows.append([model.model, task, fmt.auc(result.auc), fmt.interval(low, high),
                         fmt.num(result.auc_std), ", ".join(fmt.auc(a) for a in per_seed)])
        oracle = next((m.tasks[task].oracle_auc for m in order if task in m.tasks
                       and m.tasks[task].oracle_auc is not None), None)
        ax.axvline(0.5, color="#999", lw=0.8, ls=":")
        if oracle is not None:
            ax.axvline(oracle, color="k", lw=0.8, ls="--", label=f"oracle {oracle:.4f}")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels([m.model for m in order] if i % n_cols == 0 else [], fontsize=8)
        ax.set_title(TASKS[task].title, fontsize=9)
        ax.set_xlabel("AUC (mean over seeds, 95% CI)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    _group_legend(figure, order)
    _suptitle(figure, run, "AUC per model and task")
    path = _save(figure, run, "auc.png")
    return Figure(path, "AUC per model and task with 95% intervals", [
        "**Definition.** AUC of each task on the test split, as defined in the metric "
        "crosswalk (CVR on clicked impressions only); dotted line 0.5 (no skill), dashed line "
        "the oracle AUC of the true probabilities when the data is synthetic. Outputs a model "
        "does not model (a constant prior, e.g. a single-task model's other tasks) are left "
        "out.",
        _seed_line(run) + " Crosses: single seeds.",
        _interval_line(run)],
        Table(["model", "task", "AUC", "95% CI", "std over seeds", "per seed"], rows, "llrrrr"),
        id="figure-auc")


def latency_axis(run: Run, models: list[ModelResult]) -> tuple[str, dict[str, float]]:
    """Serving latency at 1,000 candidates where measured, else batch prediction time."""
    measured = {m.model: m.latency["p50_ms"] for m in models if m.latency}
    if measured:
        return (f"latency p50 of one request of {LATENCY_CANDIDATES:,} candidates (ms, log)",
                measured)
    batch = {m.model: m.predict_ms_per_1k for m in models if m.predict_ms_per_1k}
    return ("NOT serving latency: batch prediction over the test split, ms per 1,000 rows (log)",
            batch)


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Models no other model beats on both cost (lower) and AUC (higher), cheapest first."""
    front, best = [], -np.inf
    for _cost, auc, key in sorted(points, key=lambda p: (p[0], -p[1], p[2])):
        if auc > best:
            front.append(key)
            best = auc
    return front


def auc_vs_latency(run: Run, order: list[ModelResult]) -> Figure:
    label, cost = latency_axis(run, order)
    figure = _new_figure(13, 4.4)
    rows = []
    for task, ax in _task_axes(figure):
        points = []
        for model in order:
            result = model.tasks.get(task)
            # The constant floor costs nothing and would stretch the axis over decades.
            if (model.model not in cost or result is None or result.auc is None
                    or model.group == "floor" or result.constant_output):
                continue
            x = cost[model.model]
            points.append((x, result.auc, model.model))
            low = result.ci_low if result.ci_low is not None else result.auc
            high = result.ci_high if result.ci_high is not None else result.auc
            ax.errorbar(x, result.auc, yerr=[[result.auc - low], [high - result.auc]],
                        fmt="o", color=_color(model), capsize=3, ms=5, alpha=0.8)
        front = pareto_front(points)
        by_key = {key: (x, auc) for x, auc, key in points}
        for key in front:  # names on the front only; every point is in the data table
            ax.annotate(run.model(key).name, by_key[key], fontsize=7, xytext=(4, -10),
                        textcoords="offset points")
        if front:
            xs, ys = zip(*(by_key[k] for k in front))
            ax.step(xs, ys, where="post", color="k", lw=0.8, alpha=0.6, label="Pareto front")
            plotted = [run.model(key) for _, _, key in points]
            ax.legend(handles=ax.get_legend_handles_labels()[0] + _group_handles(plotted),
                      loc="lower right", fontsize=7)
        for x, auc, key in points:
            model = run.model(key)
            result = model.tasks[task]
            rows.append([key, task, fmt.ms(x), fmt.auc(auc),
                         fmt.interval(result.ci_low, result.ci_high),
                         "yes" if key in front else ""])
        _log_scale(ax, "x")
        _style(ax, TASKS[task].title, None, "AUC (95% CI)")
    figure.supxlabel(label, fontsize=9)
    _suptitle(figure, run, "Accuracy against serving cost")
    path = _save(figure, run, "auc_vs_latency.png")
    measured = any(m.latency for m in order)
    cost_line = (f"x: median (p50) time to score one request of {LATENCY_CANDIDATES:,} "
                 "candidates, fastest serving path on the fewest threads measured (latency "
                 "records of this run); models without one are left out." if measured else
                 "x: serving latency was **not measured** in this run; the x axis shows batch "
                 "prediction time over the whole test split per 1,000 rows instead, which "
                 "understates per-request overheads.")
    return Figure(path, "AUC against inference cost, with the Pareto front", [
        "**Definition.** Each point is a model (the constant floor and outputs a model does "
        "not model are left out); the front joins the models that no other model beats on "
        "both lower cost and higher AUC, and only they are named. " + cost_line,
        _seed_line(run), _interval_line(run)],
        Table(["model", "task", "cost (ms)", "AUC", "95% CI", "on the front"], rows, "llrrrc"),
        id="figure-pareto")


def training_time(run: Run, order: list[ModelResult]) -> Figure:
    # The constant floor trains in microseconds; on a log axis it would hide the others.
    models = [m for m in order if m.train_s is not None and m.group != "floor"]
    figure = _new_figure(8, 1.3 + 0.3 * max(len(models), 1))
    ax = figure.add_subplot(1, 1, 1)
    y = np.arange(len(models))[::-1]
    spread = [m.train_s_std for m in models]
    ax.barh(y, [m.train_s for m in models], color=[_color(m) for m in models],
            xerr=[s or 0 for s in spread] if any(spread) else None, capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels([m.model for m in models], fontsize=8)
    _log_scale(ax, "x")
    ax.set_xlabel(f"training time, seconds (log; {run.meta.get('threads', '?')} threads)",
                  fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    _group_legend(figure, models)
    _suptitle(figure, run, "Training time per model")
    path = _save(figure, run, "training_time.png")
    rows = [[m.model, m.group, fmt.seconds(m.train_s),
             fmt.seconds(m.train_s_std) if m.train_s_std is not None else fmt.DASH]
            for m in models]
    return Figure(path, "Training time per model", [
        "**Definition.** Wall-clock time of `fit` (training with early stopping on the "
        "validation split), timed by the harness, data loading excluded; bars are means over "
        "seeds, whiskers one standard deviation (with several seeds). The constant floor is "
        "left out (its time is in the costs table).",
        f"**Seeds.** {fmt.seeds(run.seeds)}. No interval: timing is one measurement per seed."],
        Table(["model", "group", "train time", "std over seeds"], rows, "llrr"),
        id="figure-train")


def best_per_group(order: list[ModelResult], task: str, include_floor: bool = False):
    """The best model of each group on `task`, chosen on validation (ccp.stats' rule)."""
    from bench.report.verdicts import by_choice, chosen_on, eligible

    have = eligible(order, task)
    best = {}
    for model in by_choice(have, task, chosen_on(have, task)):
        if model.group == "floor" and not include_floor:
            continue
        best.setdefault(model.group, model)
    return list(best.values())


def _style(ax, title: str, xlabel: str | None, ylabel: str) -> None:
    """One panel's title, axis labels, ticks and grid, alike in every figure."""
    ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _task_axes(figure):
    """(task, axes) of one panel per main task, left to right."""
    return [(task, figure.add_subplot(1, len(MAIN_TASKS), i + 1))
            for i, task in enumerate(MAIN_TASKS)]


def roc_curves(run: Run, order: list[ModelResult]) -> Figure:
    figure = _new_figure(13, 4.4)
    rows = []
    first_seed = min(run.seeds, default=None)
    for task, ax in _task_axes(figure):
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":")
        for model in best_per_group(order, task):
            result = model.tasks[task]
            if not result.roc:
                continue
            fpr, tpr = result.roc
            low, high = result.first_seed_ci
            seed = result.seeds[0]  # the model's lowest successful seed
            shown_seed = "" if seed == first_seed else f" (seed {seed})"
            ax.plot(fpr, tpr, color=_color(model), lw=1.3,
                    label=f"{model.model}{shown_seed}: {fmt.auc(result.auc_per_seed[0])} "
                          f"{fmt.interval(low, high)}")
            rows.append([task, model.group, f"{model.model}{shown_seed}",
                         fmt.auc(result.auc_per_seed[0]),
                         fmt.interval(low, high), str(len(fpr)),
                         " ".join(f"{f:.2f}:{t:.3f}" for f, t in list(zip(fpr, tpr))[::10])])
        _style(ax, TASKS[task].title, "false positive rate", "true positive rate")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=6)
    _suptitle(figure, run, f"ROC curves, best model of each group (seed {first_seed})")
    path = _save(figure, run, "roc.png")
    return Figure(path, "ROC curves of the best model of each group", [
        "**Definition.** ROC curve on the task's rows for the model of each group (GBDT, "
        "neural, linear, ...) with the best mean AUC on that task, sampled at evenly spaced "
        "false positive rates; the legend gives that seed's AUC and 95% interval.",
        f"**Seeds.** curves of seed {first_seed} (the lowest seed of the run); a model "
        "that has no result for it shows its own lowest seed, named in the legend.",
        _interval_line(run).replace("; with several seeds, combined with the spread between "
                                    "seeds (ccp.stats; see Statistical protocol).",
                                    ", of this seed's AUC (percentile).")],
        Table(["task", "group", "model", "AUC", "95% CI", "points", "fpr:tpr (every 10th)"],
              rows, "lllrrrl"),
        id="figure-roc")


def reliability(run: Run, order: list[ModelResult]) -> Figure:
    figure = _new_figure(13, 4.4)
    rows = []
    first_seed = min(run.seeds, default=None)
    for task, ax in _task_axes(figure):
        lows = []
        for model in best_per_group(order, task, include_floor=True):
            bins = model.tasks[task].reliability or []
            # Log axes cannot show an observed rate of 0; such bins are in the table only.
            shown = [(p, o) for p, o, _ in bins if p > 0 and o > 0]
            if shown:
                xs, ys = zip(*shown)
                ax.plot(xs, ys, "o-", color=_color(model), ms=3, lw=1, label=model.model)
                lows += list(xs) + list(ys)
            for p, o, n in bins:
                rows.append([task, model.model, f"{p:.5f}", f"{o:.5f}", fmt.count(n)])
        if lows:
            lo, hi = min(lows) / 1.5, min(1.0, max(lows) * 1.5)
            ax.plot([lo, hi], [lo, hi], color="#999", lw=0.8, ls=":")
            _log_scale(ax, "x")
            _log_scale(ax, "y")
            ax.legend(loc="upper left", fontsize=6)
        _style(ax, TASKS[task].title.replace(" AUC", ""), "mean predicted probability (log)",
               "observed rate (log)")
    _suptitle(figure, run, f"Reliability, best model of each group (seed {first_seed})")
    path = _save(figure, run, "reliability.png")
    return Figure(path, "Reliability: predicted against observed rate", [
        "**Definition.** The task's rows are cut into 10 bins of equal row count by predicted "
        "probability; each point is a bin's mean prediction against its observed label rate "
        "(on the dotted diagonal when calibrated). Bins with no positive cannot be drawn on "
        "log axes and appear in the table only.",
        f"**Seeds.** seed {first_seed} (the lowest seed of the run).",
        "**Interval.** none drawn; each bin's row count is in the table (a rate from n rows "
        "has a standard error of about sqrt(rate / n))."],
        Table(["task", "model", "mean predicted", "observed", "rows"], rows, "llrrr"),
        id="figure-reliability")


def draw_all(run: Run, order: list[ModelResult]) -> list[Figure]:
    if not order:
        return []
    return [auc_per_model(run, order), auc_vs_latency(run, order), training_time(run, order),
            roc_curves(run, order), reliability(run, order)]


def paths(figures: list[Figure], run_dir: Path) -> list[Path]:
    return [run_dir / f.file for f in figures]
