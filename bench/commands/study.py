"""`python -m bench study`: the regime study (issue 17) and its report.

    python -m bench study regimes --grid quick [--out DIR] [--resume] [--models ...]
    python -m bench study report DIR
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    parser = sub.add_parser("study", help="the regime study: when multi-task learning pays off")
    kinds = parser.add_subparsers(dest="study_command", required=True)
    regimes = kinds.add_parser("regimes", help="run the grid (conversion rate x relatedness x "
                                               "train size), then write its report")
    # Names checked by bench.study.grid.get_grid: importing the grids here would import the
    # generator (numpy, pyarrow) into every command's start-up.
    regimes.add_argument("--grid", default="quick",
                         help="quick (the README's, <= 60 min here), full, or mini (tests; "
                              "seconds, numbers meaningless); bench/study/grid.py")
    regimes.add_argument("--models", nargs="+", metavar="GLOB",
                         help="models to run (default: the grid's; missing ones are skipped "
                              "with a note); include baselines/lgbm_ctr_x_cvr, the reference")
    regimes.add_argument("--out", help="study folder (default reports/studies/regimes-<grid>)")
    regimes.add_argument("--resume", action="store_true",
                         help="keep an existing study folder's points and run what is missing")
    regimes.add_argument("--data-seed", type=int, default=0,
                         help="seed of every point's synthetic data (default 0)")
    regimes.add_argument("--engine", default="local", choices=("local", "dask", "torchrun"),
                         help="passed to `bench run` at every point")
    regimes.add_argument("--workers", type=int, default=2,
                         help="Dask workers / torchrun processes (default 2)")
    regimes.add_argument("--jobs", type=int, default=1,
                         help="points run at once, each a 1-thread `bench run` process "
                              "(default 1: one point at a time at the profile's threads)")
    regimes.add_argument("--no-report", action="store_true", help="skip the study report")
    regimes.add_argument("--quiet", action="store_true", help="no progress output")
    regimes.set_defaults(handler=handle_regimes)
    report = kinds.add_parser("report", help="(re)build a study's report from its records")
    report.add_argument("study_dir", help="a folder written by `study regimes`")
    report.set_defaults(handler=handle_report)


def handle_regimes(args, argv) -> int:
    from bench.run_folder import REPORTS_ROOT
    from bench.study.grid import REFERENCE, get_grid
    from bench.study.runner import STUDY_FILE, registered_models, run_study
    from ccp.ranges import check_option

    check_option("--data-seed", args.data_seed, low=0, high=2**32 - 1)
    check_option("--workers", args.workers, low=1)
    check_option("--jobs", args.jobs, low=1)
    grid = get_grid(args.grid)
    study_dir = Path(args.out) if args.out else REPORTS_ROOT / "studies" / f"regimes-{grid.name}"
    if (study_dir / STUDY_FILE).exists() and not args.resume:
        raise ValueError(f"{study_dir} already holds a study; pass --resume or another --out")
    models = registered_models(tuple(args.models) if args.models else grid.models, args.quiet)
    if REFERENCE not in models:  # every lift is measured against it
        raise ValueError(f"--models must include {REFERENCE}, the study's reference; "
                         f"got {models}")
    outcome = run_study(study_dir, grid, models, args.data_seed, args.engine, args.workers,
                        args.quiet, argv, args.jobs)
    print(f"study {grid.name}: {len(outcome['ran'])} point(s) run, "
          f"{len(outcome['skipped'])} already complete, {len(outcome['failed'])} with failures "
          f"({study_dir})")
    if not args.no_report:
        _build(study_dir)
    return 1 if outcome["failed"] else 0


def handle_report(args, argv) -> int:
    _build(Path(args.study_dir))
    return 0


def _build(study_dir: Path) -> None:
    from bench.report.study import build

    for path in build(study_dir):
        print(f"report: {path}")
