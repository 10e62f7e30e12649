"""`python -m bench data ...`: generate synthetic data, convert raw files, benchmark conversion."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    parser = sub.add_parser("data", help="generate, convert and inspect data sets")
    actions = parser.add_subparsers(dest="data_command", required=True)

    synth = actions.add_parser("synth", help="write a synthetic Ali-CCP (raw format, known truth)")
    synth.add_argument("--profile", default="small", help="tiny, small (default) or aliccp")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=float, help="size multiplier (aliccp: fraction of the "
                                                    "real 85M impressions)")
    synth.add_argument("--out", help="output folder (default data/synthetic-<profile>-seed<seed>)")
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(handler=handle_synth)

    prepare = actions.add_parser("prepare", help="convert raw Tianchi files to the Parquet cache")
    prepare.add_argument("--data-dir", required=True, help="folder with the four raw files")
    prepare.add_argument("--cache-dir", help="default: <data-dir>/cache")
    prepare.add_argument("--lenient", action="store_true",
                         help="skip bad lines (counted and reported) instead of failing")
    prepare.add_argument("--quiet", action="store_true")
    prepare.set_defaults(handler=handle_prepare)

    bench_prepare = actions.add_parser(
        "bench-prepare", help="measure conversion speed and peak memory at two or more sizes")
    from bench import prepare_bench

    prepare_bench.add_arguments(bench_prepare)
    bench_prepare.set_defaults(handler=handle_bench_prepare)

    info = actions.add_parser("info", help="load a data set and print its counts and rates")
    from bench.commands.options import add_data_arguments
    add_data_arguments(info)
    info.add_argument("--profile", default="small", help="synthetic data profile")
    info.set_defaults(handler=handle_info)


def handle_synth(args, argv) -> int:
    import time
    from pathlib import Path

    from ccp.data import synth
    from ccp.data.loader import synthetic_dir

    out = Path(args.out) if args.out else synthetic_dir(args.profile, args.seed)
    started = time.perf_counter()
    kwargs = {"scale": args.scale} if args.scale is not None else {}
    info = synth.generate(out, profile=args.profile, seed=args.seed, progress=not args.quiet,
                          **kwargs)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(json.dumps(info, indent=2, default=str))
    print(f"wrote {out} ({size / 1e6:.1f} MB) in {seconds:.1f}s")
    return 0


def handle_prepare(args, argv) -> int:
    from pathlib import Path

    from ccp.data import raw

    data_dir = Path(args.data_dir)
    cache_dir = Path(args.cache_dir) if args.cache_dir else data_dir / "cache"
    report = raw.convert_raw(data_dir, cache_dir, lenient=args.lenient,
                             progress=not args.quiet)
    print(json.dumps(report, indent=2, default=str))
    return 0


def handle_bench_prepare(args, argv) -> int:
    from bench import prepare_bench

    return prepare_bench.run(args)


def handle_info(args, argv) -> int:
    from bench.commands.options import data_options
    from ccp.data.loader import EmptySplitError, load, require_rows

    data = load(**data_options(args), synth_profile=args.profile, allow_empty=True)
    print(json.dumps({"name": data.name, "fingerprint": data.fingerprint, **data.info},
                     indent=2, default=str))
    try:
        require_rows(data)
    except EmptySplitError as error:
        print(f"warning: {error}; `bench run` will refuse this data", file=sys.stderr)
        return 1
    return 0
