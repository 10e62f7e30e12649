"""The study's figures (matplotlib, Agg): lift over the reference against train size, one panel
per (conversion rate, relatedness), with 95% paired intervals; and a heat map of every model's
lift at every point, marked with its verdict. Each figure carries its numbers as a table.
"""

from __future__ import annotations

from pathlib import Path

from bench.report import fmt
from bench.report.figures import FIGURE_DIR, _new_figure
from bench.report.render import Figure, Table
from bench.report.study_lifts import LOSE, TIE, WIN, Lift, Study
from bench.report.study_text import TASK_NAMES

MARK = {WIN: "W", LOSE: "L", TIE: "=", None: "?"}


def _save(figure, study: Study, name: str) -> str:
    folder = study.study_dir / FIGURE_DIR
    folder.mkdir(exist_ok=True)
    figure.savefig(folder / name, metadata={"Software": None})  # same bytes on a rebuild
    return f"{FIGURE_DIR}/{name}"


def _table(lifts: list[Lift]) -> Table:
    rows = [[x.model, f"{x.point['cvr']:g}", f"{x.point['relatedness']:g}",
             f"{x.point['train_rows']:,}", fmt.signed(x.lift), fmt.interval(x.ci_low, x.ci_high),
             x.verdict or fmt.DASH] for x in lifts]
    return Table(["model", "conv. rate", "relatedness", "train rows", "lift", "95% CI",
                  "verdict"], rows, align="lrrrrrl")


def _caption(study: Study, task: str) -> list[str]:
    return [f"Lift = {TASK_NAMES[task]} of the model minus that of `{study.reference}`, "
            "means over seeds; same test rows for every model of a point.",
            "Interval: 95% percentile of the paired request-level bootstrap differences "
            "(seed-averaged replicates); W/L/= : interval above 0 / below 0 / covering 0.",
            f"Seeds: {', '.join(map(str, study.spec.get('seeds', [])))}; "
            f"grid `{study.spec.get('grid')}`."]


def lift_lines(study: Study, task: str) -> Figure | None:
    lifts = [x for x in study.lifts if x.task == task and x.lift is not None]
    if not lifts:
        return None
    regions = sorted({(x.point["cvr"], x.point["relatedness"]) for x in lifts})
    models = sorted({x.model for x in lifts})
    cols = min(len(regions), 4)
    rows = -(-len(regions) // cols)
    figure = _new_figure(3.2 * cols + 0.5, 2.6 * rows + 0.8)
    axes = figure.subplots(rows, cols, squeeze=False, sharey=True)
    colors = {m: f"C{i % 10}" for i, m in enumerate(models)}
    for ax, (cvr, rel) in zip(axes.flat, regions, strict=False):
        for model in models:
            mine = sorted((x for x in lifts if x.model == model
                           and (x.point["cvr"], x.point["relatedness"]) == (cvr, rel)),
                          key=lambda x: x.point["train_rows"])
            sizes = [x.point["train_rows"] for x in mine]
            low = [x.lift - x.ci_low if x.ci_low is not None else 0 for x in mine]
            high = [x.ci_high - x.lift if x.ci_high is not None else 0 for x in mine]
            ax.errorbar(sizes, [x.lift for x in mine], yerr=[low, high], marker="o", ms=3,
                        capsize=2, color=colors[model], label=model)
        ax.axhline(0, color="#444", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"conv. rate {cvr:g}, relatedness {rel:g}", fontsize=8)
        ax.set_xlabel("train rows", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(regions):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel(f"{task.upper()} AUC lift", fontsize=8)
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center",
                  ncols=min(len(models), 4), fontsize=7)
    figure.suptitle(f"{TASK_NAMES[task]}: lift over {study.reference}", fontsize=9)
    path = _save(figure, study, f"study_lift_{task}.png")
    return Figure(path, f"{task} AUC lift against train size", _caption(study, task),
                  _table(lifts))


def lift_heatmap(study: Study, task: str) -> Figure | None:
    import numpy as np

    lifts = [x for x in study.lifts if x.task == task]
    if not lifts:
        return None
    models = sorted({x.model for x in lifts})
    points = sorted({(x.point["cvr"], x.point["relatedness"], x.point["train_rows"])
                     for x in lifts}, key=lambda p: (-p[0], p[1], p[2]))
    grid = np.full((len(models), len(points)), np.nan)
    marks = {}
    for x in lifts:
        i = models.index(x.model)
        j = points.index((x.point["cvr"], x.point["relatedness"], x.point["train_rows"]))
        grid[i, j] = np.nan if x.lift is None else x.lift
        marks[i, j] = MARK[x.verdict]
    figure = _new_figure(max(4.0, 0.55 * len(points) + 2.5), 0.45 * len(models) + 2.2)
    ax = figure.subplots()
    bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    image = ax.imshow(grid, cmap="RdBu", vmin=-bound or -1, vmax=bound or 1, aspect="auto")
    for (i, j), mark in marks.items():
        ax.text(j, i, mark, ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=7)
    ax.set_xticks(range(len(points)), [f"{c:g} / {r:g} / {n:,}" for c, r, n in points],
                  rotation=60, ha="right", fontsize=6)
    ax.set_xlabel("conversion rate / relatedness / train rows", fontsize=8)
    figure.colorbar(image, ax=ax, label=f"{task.upper()} AUC lift")
    figure.suptitle(f"{TASK_NAMES[task]}: lift over {study.reference} at every point",
                    fontsize=9)
    path = _save(figure, study, f"study_heatmap_{task}.png")
    return Figure(path, f"{task} AUC lift heat map", _caption(study, task), None)


def draw(study: Study) -> list[Figure]:
    from bench.report.study_lifts import STUDY_TASKS

    drawn = [f(study, task) for task in STUDY_TASKS for f in (lift_lines, lift_heatmap)]
    return [f for f in drawn if f is not None]


def paths(study_dir: Path) -> list[Path]:
    return sorted((Path(study_dir) / FIGURE_DIR).glob("study_*.png"))
