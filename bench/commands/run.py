"""`python -m bench run`: train and evaluate registered models; write records, meta and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    from bench.commands.options import add_run_arguments

    parser = sub.add_parser("run", help="train and evaluate models, write results and report")
    add_run_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from bench import harness, meta, tuned_config
    from bench.commands.options import (
        data_options,
        parse_overrides,
        split_settings,
        with_model_keywords,
    )
    from bench.registry import select
    from bench.run_folder import (
        build_report,
        check_resumable,
        link_latest,
        prepare_run_dir,
        resumed_meta,
    )
    from ccp import atomic
    from ccp.data.loader import load
    from ccp.profiles import get_profile
    from ccp.ranges import check_option

    specs = select(None if args.all else args.models)
    profile_settings, neural_settings, model_keywords = split_settings(
        parse_overrides(args.set), specs)
    profile = get_profile(args.profile).with_overrides(profile_settings)
    # --seeds, --threads and --jobs are checked against the profile's ranges but not stored in
    # it: a --resume with more seeds must still find the same profile.
    chosen = profile.with_overrides({k: v for k, v in (("seeds", args.seeds),
                                                       ("threads", args.threads),
                                                       ("jobs", args.jobs))
                                     if v is not None})
    seeds, threads, jobs = chosen.seeds, chosen.threads, chosen.jobs
    check_option("--workers", args.workers, low=1)
    if jobs > 1 and args.threads is None:  # the profile's threads shared by its jobs
        threads = max(1, threads // jobs)
    if args.engine == "torchrun":  # every rank runs this command again, under torchrun
        from bench.distributed.engines import launch_torchrun

        return launch_torchrun(argv[1:], args.workers)
    if args.engine == "dask":
        from bench.distributed.engines import dask_specs

        specs = dask_specs(specs, args.scheduler, args.workers)
    workers = args.workers if args.engine != "local" else 1
    progress = not args.quiet
    early_meta = Path(args.out) / harness.META_FILE if args.resume and args.out else None
    if early_meta is not None and early_meta.exists():  # say so before loading the data
        check_resumable(early_meta.parent, json.loads(early_meta.read_text()), None,
                        profile.__dict__, neural_settings, model_keywords)
    data = load(**{**data_options(args), "synth_profile": profile.synth_profile,
                   "progress": progress,
                   # Dask workers read the encoded cache's files themselves.
                   **({"out_of_core": True} if args.engine == "dask" else {})})
    run_dir = prepare_run_dir(args.out, f"{data.name}-{profile.name}", args.overwrite,
                              args.resume)
    meta_path = run_dir / harness.META_FILE
    previous = (json.loads(meta_path.read_text())
                if args.resume and meta_path.exists() else None)
    if previous is not None:
        check_resumable(run_dir, previous, data.fingerprint, profile.__dict__, neural_settings,
                        model_keywords)
    selected = [s.key for s in specs]
    # A resumed folder keeps its successful (model, seed) pairs; only the others run.
    # A pair cut between its task records by a crash runs again (harness.trim_for_resume).
    done = harness.trim_for_resume(run_dir) if args.resume else frozenset()
    configs = with_model_keywords(
        tuned_config.configs_for_run(data.name, data.fingerprint, profile.name, selected,
                                     not args.no_tuned, args.engine), specs, model_keywords)
    run_meta = meta.collect(argv, dataset=data.name, fingerprint=data.fingerprint,
                            data_info=data.info, vocab_sizes=data.vocab_sizes,
                            profile=profile.__dict__, seeds=list(seeds), threads=threads,
                            jobs=jobs,
                            models=selected, engine=args.engine,
                            workers=workers, neural_settings=neural_settings,
                            model_keywords=model_keywords,
                            configs={k: c["config_file"] or f"default: {c['config_why']}"
                                     for k, c in configs.items()},
                            started_utc=harness.utc_now())
    if previous is not None:
        run_meta = resumed_meta(previous, run_meta)
    atomic.write_json(meta_path, run_meta, indent=2, sort_keys=True, default=str)
    latency = _latency_step(args, run_dir, data, profile, progress)
    records = harness.run_suite(specs, data, profile, seeds, run_dir, threads, progress,
                                extra=neural_settings, engine=args.engine, workers=workers,
                                done=done, on_fitted=latency, configs=configs, jobs=jobs)
    run_meta["finished_utc"] = harness.utc_now()
    if latency is not None:
        run_meta["serving_latency"] = latency.meta()
        print(f"serving latency: {latency.seconds:.0f} s for {len(latency.measured)} models")
    atomic.write_json(meta_path, run_meta, indent=2, sort_keys=True, default=str)
    failed = sorted({r["model"] for r in records if r.get("error")})
    print(f"results: {run_dir / harness.RESULTS_FILE} ({len(records)} records"
          f"{', failed: ' + ', '.join(failed) if failed else ''})")
    if not args.no_report:
        build_report(run_dir)
    link_latest(run_dir)
    if failed:  # results and report are written; the exit status still tells a script
        print(f"error: {len(failed)} model(s) failed (their errors are records in "
              f"{harness.RESULTS_FILE} and listed in the report)", file=sys.stderr)
        return 1
    return 0


def _latency_step(args, run_dir, data, profile, progress: bool):
    """The serving latency of each fitted model (bench.run_latency), or None where skipped:
    --no-latency, or an engine that fits models outside this process."""
    if args.no_latency or args.engine != "local":
        return None
    from bench.run_latency import RunLatency

    return RunLatency(run_dir, data, profile.name, progress)
