"""`python -m bench throughput`: training samples per second of neural models.

The issue's target configuration is the default: MMoE, 4 experts [256, 128], embedding 16,
towers [64], batch 2048, on the default synthetic data, threads from the profile.
"""

from __future__ import annotations

import json
import sys

TARGET_SAMPLES_PER_S = 25_000


def add_parser(sub) -> None:
    from bench.commands.options import add_data_arguments
    from ccp.profiles import DEFAULT_PROFILE, PROFILES

    parser = sub.add_parser("throughput", help="training throughput (samples/s) of neural models")
    parser.add_argument("--models", nargs="+", default=["neural/mmoe"], metavar="GLOB",
                        help="neural model glob(s) (default neural/mmoe)")
    add_data_arguments(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help="synthetic data size and threads (default %(default)s)")
    parser.add_argument("--threads", type=int, help="threads (default: the profile's)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=60, help="timed steps (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per setting")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="neural setting (neural/config.py), e.g. --set pooling=sum; "
                             "repeat a key with ';'-separated values to compare them, e.g. "
                             "--set 'embedding_gradients=rows;sparse;dense'")
    parser.add_argument("--table-rows", type=int,
                        help="pad the embedding table to this many rows (full-size vocabulary)")
    parser.add_argument("--json", metavar="FILE", help="append one JSON record per measurement")
    parser.set_defaults(handler=handle)


def settings_grid(pairs: list[str]) -> list[dict]:
    """--set values, with 'a;b;c' alternatives expanded into one setting each."""
    grid = [{}]
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, values = (p.strip() for p in pair.split("=", 1))
        grid = [{**g, key: v} for g in grid for v in values.split(";")]
    return grid


def handle(args, argv) -> int:
    from bench.commands.options import data_options
    from bench.registry import select
    from ccp.data.loader import load
    from ccp.profiles import get_profile
    from neural.throughput import measure

    profile = get_profile(args.profile)
    threads = args.threads or profile.threads
    specs = [s for s in select(args.models) if s.family == "neural"]
    if not specs:
        raise ValueError(f"no neural model matches {args.models}")
    data = load(**data_options(args), synth_profile=profile.synth_profile, progress=True)
    # Repeats go round the settings (A B A B, not A A B B), so a change in the machine's load
    # during the measurement does not favour one setting.
    for spec in specs:
        for _ in range(args.repeat):
            for overrides in settings_grid(args.set):
                record = measure(spec, data, threads, args.batch_size, args.steps, args.warmup,
                                 overrides, args.table_rows)
                record["command"] = " ".join(["python -m bench", *argv])
                shown = " ".join(f"{k}={v}" for k, v in overrides.items())
                print(f"{spec.key} {shown or '(defaults)'}: {record['samples_per_s']:,.0f} "
                      f"samples/s wall, {record['cpu_samples_per_s']:,.0f} per CPU-second "
                      f"x {threads} threads, {record['step_ms']:.1f} ms/step, load "
                      f"{record['loadavg_before']:.1f}->{record['loadavg_after']:.1f}, "
                      f"{record['table_rows']:,} table rows")
                if args.json:
                    with open(args.json, "a") as out:
                        out.write(json.dumps(record, sort_keys=True) + "\n")
    if args.batch_size == 2048 and any(s.name == "mmoe" for s in specs) and not args.set:
        print(f"target: >= {TARGET_SAMPLES_PER_S:,} samples/s for neural/mmoe (issue 4)",
              file=sys.stderr)
    return 0
