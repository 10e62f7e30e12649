"""Reports built from a run folder's results.jsonl + meta.json alone.

    from bench.report import build
    build(run_dir)  # -> [report.md, report.html, figures/*.png]

report.md reads on GitHub as it is; report.html is one self-contained page (figures embedded)
that opens offline. Both come from the same blocks, and nothing in them depends on when or
where the report is built (the date shown is the run's, from meta.json), so rebuilding a copy
of the two input files gives the same report.md.
"""

from __future__ import annotations

from pathlib import Path


def blocks_for(run) -> list:
    from bench.report import figures, sections, verdict_sections
    from bench.report.inputs import inputs_section
    from bench.report.render import Heading

    order = sections.leaderboard_order(run.models)
    drawn = figures.draw_all(run, order)
    # Plain words first, then what the numbers rest on, then the numbers.
    blocks = (sections.title(run) + sections.summary(run) + sections.header(run)
              + sections.data_section(run) + sections.leaderboard(run)
              + verdict_sections.protocol(run))
    if drawn:
        blocks.append(Heading(2, "Figures", "figures"))
        blocks += drawn
    blocks += (sections.crosswalk(run) + sections.oracle_gaps(run) + sections.calibration(run)
               + sections.costs(run) + inputs_section(run) + sections.failures(run)
               + sections.definitions(run))
    return blocks


def build(run_dir: str | Path) -> list[Path]:
    """Write report.md, report.html and figures/*.png into run_dir; return their paths."""
    from bench.report.render import write_report
    from bench.report.results import load_run
    from bench.report.sections import profile_name

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    title = f"ccpbench report: {run.meta.get('dataset', '?')}, profile {profile_name(run)}"
    written = write_report(run_dir, blocks_for(run), title)
    figure_paths = sorted((run_dir / "figures").glob("*.png")) if run.models else []
    return [*written, *figure_paths]
