"""The regime study's report (report.md + report.html + figures/study_*.png in the study
folder), built from study.json and the points' run records only:

    from bench.report.study import build
    build(study_dir)
"""

from __future__ import annotations

from pathlib import Path

from bench.report import fmt
from bench.report.render import Bullets, Heading, Para, Table


def _ceiling_table(study) -> Table:
    """Reference AUC against the achievable ceiling and the oracle (same test rows) per point."""
    seen, rows = set(), []
    for x in study.lifts:
        key = (x.point["run"], x.task)
        if key in seen:
            continue
        seen.add(key)
        gap = (x.achievable_auc - x.reference_auc
               if x.achievable_auc is not None and x.reference_auc is not None else None)
        rows.append([f"{x.point['cvr']:g}", f"{x.point['relatedness']:g}",
                     f"{x.point['train_rows']:,}",
                     f"{study.train_rows.get(x.point['run']) or 0:,}", x.task.upper(),
                     fmt.count(x.n_positives), fmt.auc(x.reference_auc),
                     fmt.auc(x.achievable_auc), fmt.auc(x.oracle_auc), fmt.signed(gap)])
    return Table(["conv. rate", "relatedness", "train rows (asked)", "train rows (used)",
                  "task", "test positives", "reference AUC", "achievable AUC", "oracle AUC",
                  "room"], rows, align="rrrrlrrrrr")


def _lift_table(study) -> Table:
    rows = [[x.model, f"{x.point['cvr']:g}", f"{x.point['relatedness']:g}",
             f"{x.point['train_rows']:,}", x.task.upper(), fmt.auc(x.model_auc),
             fmt.auc(x.reference_auc), fmt.signed(x.lift), fmt.interval(x.ci_low, x.ci_high),
             x.verdict or fmt.DASH]
            for x in sorted(study.lifts, key=lambda x: (x.task, x.model, x.point["cvr"],
                                                        x.point["relatedness"],
                                                        x.point["train_rows"]))]
    return Table(["model", "conv. rate", "relatedness", "train rows", "task", "AUC",
                  "reference AUC", "lift", "95% CI", "verdict"], rows, align="lrrrlrrrrl")


def blocks_for(study) -> list:
    from bench.report import study_figures
    from bench.report.study_text import TASK_NAMES, conclusions

    spec = study.spec
    blocks = [Heading(1, f"ccpbench regime study: grid {spec.get('grid')}"),
              Para(f"Command: `{' '.join(spec.get('command') or [])}`. Synthetic profile "
                   f"`{spec.get('synth_profile')}` (data seed {spec.get('data_seed')}), run "
                   f"profile `{spec.get('run_profile')}` with {spec.get('budgets') or {}}; "
                   f"seeds {', '.join(map(str, spec.get('seeds', [])))}; engine "
                   f"{spec.get('engine')}. Reference: `{study.reference}`. Every number below "
                   "is read from the points' results.jsonl files."),
              Heading(2, "Conclusions (generated from the numbers)", "conclusions")]
    found = conclusions(study)
    if not found:
        blocks.append(Para("No comparison with the reference could be made yet."))
    for task, sentences in found.items():
        blocks += [Heading(3, TASK_NAMES[task]), Bullets(sentences)]
    if study.missing:
        blocks.append(Para(f"Points without usable records (not run, or the reference failed): "
                           f"{', '.join(study.missing)}."))
    drawn = study_figures.draw(study)
    if drawn:
        blocks += [Heading(2, "Figures", "figures"), *drawn]
    blocks += [Heading(2, "Achievable ceiling", "ceiling"),
               Para("Achievable AUC: the generator's true probabilities with the noise no model "
                    "observes integrated out, scored like a model on the same test rows (the "
                    "data's info); oracle AUC: the true probabilities themselves (records' "
                    "oracle_auc), which no model can reach; room = achievable minus the "
                    "reference."),
               _ceiling_table(study),
               Heading(2, "Every comparison", "lifts"), _lift_table(study)]
    return blocks


def build(study_dir: str | Path) -> list[Path]:
    """Write report.md, report.html and figures/study_*.png into study_dir; return the paths."""
    from bench.report.render import write_report
    from bench.report.study_figures import paths
    from bench.report.study_lifts import load_study

    study_dir = Path(study_dir)
    study = load_study(study_dir)
    title = f"ccpbench regime study: {study.spec.get('grid')}"
    return [*write_report(study_dir, blocks_for(study), title), *paths(study_dir)]
