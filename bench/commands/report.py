"""`python -m bench report RUN_DIR`: rebuild a run's report from results.jsonl + meta.json."""

from __future__ import annotations


def add_parser(sub) -> None:
    parser = sub.add_parser("report", help="(re)build report.md, report.html and figures of a "
                                           "run folder from its results.jsonl and meta.json")
    parser.add_argument("run_dir", nargs="?", default=None,
                        help="run folder (default: reports/latest)")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from pathlib import Path

    from bench.report import build
    from bench.run_folder import REPORTS_ROOT

    run_dir = Path(args.run_dir) if args.run_dir else REPORTS_ROOT / "latest"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found")
    for path in build(run_dir):
        print(f"report: {path}")
    return 0
