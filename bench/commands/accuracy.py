"""`python -m bench accuracy`: the CI accuracy gate (bench/accuracy_gate.py).

    python -m bench accuracy --check              # every registered model vs the baseline
    python -m bench accuracy --check --models 'baselines/lgbm_*'
    python -m bench accuracy --update-baseline    # re-measure the baseline, on purpose
"""

from __future__ import annotations

from pathlib import Path


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if len(seeds) != len(set(seeds)):
        raise ValueError(f"--seeds: a seed is repeated in {text!r}")
    return seeds


def add_parser(sub) -> None:
    parser = sub.add_parser("accuracy", help="CI accuracy gate: AUCs vs a committed baseline")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true",
                        help="train the models on the gate's data and compare with the "
                             "baseline; exit 1 on a drop beyond an entry's tolerance")
    action.add_argument("--update-baseline", action="store_true",
                        help="re-measure the baseline (every baseline seed) and rewrite it")
    parser.add_argument("--models", nargs="+", metavar="GLOB",
                        help="glob(s) over family/name (default: every registered model); "
                             "with --update-baseline, the file's other models are kept")
    parser.add_argument("--baseline", help="baseline file (default "
                                           "reports/accuracy_baseline.json)")
    parser.add_argument("--seeds", help="--update-baseline: comma-separated baseline seeds "
                                        "(default 0,1,2,3,4,5,6)")
    parser.add_argument("--check-seeds", help="--update-baseline: the seeds a check trains, "
                                              "among --seeds (default the first two)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from bench import accuracy_gate

    path = Path(args.baseline) if args.baseline else accuracy_gate.BASELINE_PATH
    if args.check:
        if args.seeds or args.check_seeds:
            raise ValueError("--seeds and --check-seeds go with --update-baseline (a check "
                             "trains the seeds its baseline names)")
        return accuracy_gate.check(path, models=args.models, progress=not args.quiet)
    seeds = _seeds(args.seeds) if args.seeds else accuracy_gate.BASELINE_SEEDS
    check_seeds = _seeds(args.check_seeds) if args.check_seeds else None
    return accuracy_gate.update_baseline(path, seeds, check_seeds, models=args.models,
                                         progress=not args.quiet)
