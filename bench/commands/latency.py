"""`python -m bench latency`: request-level serving latency of registered models, and its CI gate.

    python -m bench latency                       # every model, small profile, N = 1,100,1000
    python -m bench latency --models 'neural/*' --threads 1 --out reports/latest
    python -m bench latency --check               # CI gate vs reports/latency_baseline.json
    python -m bench latency --update-baseline     # re-measure the gate's baseline, on purpose
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _ints(option: str, text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 1 of `option`; an error line names the option."""
    from ccp.ranges import check_option

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()  # reported as out of range, with the text as given
    check_option(option, values, "comma-separated integers, each", given=text, low=1,
                 nonempty=True)
    return values


def add_parser(sub) -> None:
    from bench.commands.options import add_data_arguments
    from bench.latency import DEFAULT_CANDIDATES, DEFAULT_THREADS
    from ccp.profiles import DEFAULT_PROFILE, PROFILES

    parser = sub.add_parser("latency", help="serving latency per request (and the CI gate)")
    parser.add_argument("--models", nargs="+", metavar="GLOB",
                        help="glob(s) over family/name (default: every registered model)")
    add_data_arguments(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help=f"budgets and synthetic data size (default {DEFAULT_PROFILE})")
    parser.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    parser.add_argument("--threads", default=",".join(map(str, DEFAULT_THREADS)),
                        help="comma-separated thread counts to time (default 1,2)")
    parser.add_argument("--candidates", default=",".join(map(str, DEFAULT_CANDIDATES)),
                        help="comma-separated candidates per request (default 1,100,1000)")
    parser.add_argument("--paths", nargs="+", metavar="NAME",
                        help="only these scoring paths: library, compiled, and for neural "
                             "models eager_per_candidate, eager, request_shared, projected, int8, "
                             "bf16")
    parser.add_argument("--min-repeats", type=int, default=300,
                        help="timed requests per setting, at least (default 300)")
    parser.add_argument("--budget-s", type=float, default=3.0,
                        help="keep timing a setting until this many seconds (default 3)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile budget, e.g. --set neural_max_epochs=1, or "
                             "a neural setting, e.g. --set embedding_dim=32")
    parser.add_argument("--out", help="run folder to append latency records to (e.g. the folder "
                                      "of a `bench run`, so its report shows them); default: "
                                      "a new folder under reports/runs/")
    parser.add_argument("--no-report", action="store_true", help="skip (re)building the report")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    gate = parser.add_argument_group("CI gate (see README, 'Latency')")
    gate.add_argument("--check", action="store_true",
                      help="compare the gated models against the committed baseline; exit 1 "
                           "on a regression that repeats on a second attempt")
    gate.add_argument("--update-baseline", action="store_true",
                      help="re-measure the gated models and rewrite the baseline file")
    gate.add_argument("--baseline", help="baseline file (default reports/latency_baseline.json)")
    gate.add_argument("--threshold", type=float,
                      help="allowed slowdown as a fraction (default: the baseline's, 0.30)")
    gate.add_argument("--rounds", type=int, default=5,
                      help="gate rounds; each ratio is the median over rounds (default 5)")
    gate.add_argument("--retry-s", type=float, default=None,
                      help="how long the second attempt may re-measure failing entries "
                           "(default 40 s; 0 = one pass)")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    if args.check or args.update_baseline:
        from bench import latency_gate
        from ccp.ranges import check_option

        check_option("--rounds", args.rounds, low=1)
        for option, value in (("--threshold", args.threshold), ("--retry-s", args.retry_s)):
            if value is not None:
                check_option(option, value, "a number", low=0)

        if args.check and args.update_baseline:
            raise ValueError("--check and --update-baseline are exclusive")
        baseline = Path(args.baseline) if args.baseline else latency_gate.BASELINE_PATH
        if args.update_baseline:
            return latency_gate.update_baseline(baseline, rounds=args.rounds,
                                                threshold=args.threshold)
        retry_s = latency_gate.RETRY_S if args.retry_s is None else args.retry_s
        return latency_gate.check(baseline, rounds=args.rounds, threshold=args.threshold,
                                  retry_s=retry_s)
    return measure(args, argv)


def _check_timing(args) -> None:
    from ccp.ranges import check_option

    check_option("--seed", args.seed, low=0, high=2**32 - 1)
    check_option("--min-repeats", args.min_repeats, low=1)
    check_option("--budget-s", args.budget_s, "a number", low=0)
    check_option("--warmup", args.warmup, low=0)


def _prepare_out(out: str | None, name: str) -> Path:
    """The run folder: --out as it is (records are appended), or a new one."""
    from bench.run_folder import prepare_run_dir
    if out is not None and Path(out).exists():
        return Path(out)
    return prepare_run_dir(out, f"{name}-latency", overwrite=False, resume=False)


def _with_auc_change(model, split, records: list[dict]) -> list[dict]:
    """int8 and bf16 scores differ from eager: their records carry the test AUC change."""
    reduced = {r["path"] for r in records if r.get("path") in ("int8", "bf16")
               and r.get("error") is None}
    if not reduced:
        return records
    from neural.serving_paths import auc_change

    change = {path: auc_change(model, split, path) for path in reduced}
    return [{**r, **change[r["path"]]} if r.get("path") in change and r.get("error") is None
            else r for r in records]


def measure(args, argv) -> int:
    from bench import harness, meta
    from bench.commands.options import data_options, parse_overrides, split_settings
    from bench.latency import measure_model, serving_paths
    from bench.registry import select
    from bench.run_folder import build_report, link_latest
    from ccp.data.loader import load
    from ccp.profiles import get_profile

    specs = select(args.models)
    profile_settings, neural_settings, model_keywords = split_settings(
        parse_overrides(args.set), specs)
    profile = get_profile(args.profile).with_overrides(profile_settings)
    threads, candidates = _ints("--threads", args.threads), _ints("--candidates", args.candidates)
    _check_timing(args)
    progress = not args.quiet
    data = load(**data_options(args), synth_profile=profile.synth_profile, progress=progress)
    run_dir = _prepare_out(args.out, f"{data.name}-{profile.name}")
    meta_path = run_dir / harness.META_FILE
    latency_meta = meta.collect(argv, dataset=data.name, fingerprint=data.fingerprint,
                                profile=profile.__dict__, seed=args.seed, threads=list(threads),
                                candidates=list(candidates), models=[s.key for s in specs],
                                neural_settings=neural_settings,
                                started_utc=harness.utc_now())
    run_meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if run_meta is not None and run_meta.get("fingerprint") not in (None, data.fingerprint):
        raise ValueError(f"{run_dir} holds results of data fingerprint {run_meta['fingerprint']}"
                         f", not {data.fingerprint}: pass the same --dataset/--profile as its run")
    if run_meta is None:
        run_meta = dict(latency_meta)
    run_meta.setdefault("latency_runs", []).append(latency_meta)
    meta_path.write_text(json.dumps(run_meta, indent=2, sort_keys=True, default=str))

    timing = {"warmup": args.warmup, "min_repeats": args.min_repeats,
              "budget_s": args.budget_s}
    n_records, failed = 0, set()
    for step, spec in enumerate(specs, 1):
        if progress:
            print(f"[{step}/{len(specs)}] {spec.key}: fitting ...", file=sys.stderr, flush=True)
        base = {"model": spec.key, "name": spec.name, "family": spec.family,
                "dataset": data.name, "fingerprint": data.fingerprint,
                "profile": profile.name, "seed": args.seed}
        try:
            taken = {k: v for k, v in model_keywords.items() if k in spec.keywords()}
            model = harness.fitted(spec, data, profile, args.seed, profile.threads,
                                   model_settings=taken, extra=neural_settings)
            paths = serving_paths(model)
        except Exception as error:  # a model that cannot be fitted is a row, not a crash
            records = [{**base, "kind": "latency", "n_candidates": None, "threads": None,
                        "path": None, "p50_ms": None, "version": harness.bench_version(),
                        "error": f"{type(error).__name__}: {error}", "utc": harness.utc_now()}]
        else:
            if args.paths:
                paths = {k: v for k, v in paths.items() if k in args.paths}
            records = measure_model(model, paths, data.test, candidates, threads, base,
                                    seed=args.seed, progress=progress, calibration=data.valid,
                                    **timing)
            records = _with_auc_change(model, data.test, records)
        for record in records:
            harness.append_record(run_dir, record)
            if record.get("error"):
                failed.add(spec.key)
                if progress:
                    print(f"    FAILED {record.get('path')}: {record['error']}", file=sys.stderr)
        n_records += len(records)
    run_meta["latency_runs"][-1]["finished_utc"] = harness.utc_now()
    meta_path.write_text(json.dumps(run_meta, indent=2, sort_keys=True, default=str))
    print(f"latency: {run_dir / harness.RESULTS_FILE} ({n_records} records"
          f"{', failed: ' + ', '.join(sorted(failed)) if failed else ''})")
    if not args.no_report:
        build_report(run_dir)
    link_latest(run_dir)  # only folders under reports/runs/
    return 0
