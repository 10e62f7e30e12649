"""`python -m bench compare RUN_A RUN_B`: every (model, task) of two runs on the same data.

    python -m bench compare reports/runs/A reports/runs/B            # Markdown to stdout
    python -m bench compare A B --html compare.html --json compare.json
    python -m bench compare A B --json -                               # JSON to stdout
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    parser = sub.add_parser("compare", help="compare two run folders: AUC differences with "
                                            "paired intervals, time and latency ratios")
    parser.add_argument("run_a", help="run folder A (the reference, e.g. before a change)")
    parser.add_argument("run_b", help="run folder B (compared with A: B - A, B / A)")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the rows as JSON ('-': to stdout, instead of Markdown)")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from bench.report.compare_runs import blocks, compare_runs, to_dict
    from bench.report.render import to_html, to_markdown

    for folder in (args.run_a, args.run_b):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"run folder {folder} not found")
    comparison = compare_runs(args.run_a, args.run_b)
    rendered = blocks(comparison)
    if args.json:
        text = json.dumps(to_dict(comparison), indent=2, sort_keys=True) + "\n"
        if args.json == "-":
            print(text, end="")
        else:
            Path(args.json).write_text(text)
    if args.html:
        Path(args.html).write_text(to_html(rendered, "ccpbench: run B against run A",
                                           Path(args.run_a)))
    if args.json != "-":
        print(to_markdown(rendered), end="")
    return 0
