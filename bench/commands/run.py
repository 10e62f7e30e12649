"""`python -m bench run`: train and evaluate registered models; write records, meta and report."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

# CCPBENCH_REPORTS moves the default run folders (tests start real processes with it).
REPORTS_ROOT = Path(os.environ.get("CCPBENCH_REPORTS",
                                   Path(__file__).resolve().parents[2] / "reports"))


def add_data_arguments(parser) -> None:
    """Data options shared by every command that loads a data set."""
    from bench.data.loader import DATASETS

    parser.add_argument("--dataset", default="synthetic", choices=DATASETS,
                        help="synthetic (default, generated on first use), aliccp (raw Tianchi "
                             "files in --data-dir) or aliccp-csv (processed CSV files)")
    parser.add_argument("--data-dir", help="where the data set's files are")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic data set (default 0)")
    parser.add_argument("--min-count", type=int, default=10,
                        help="ids seen fewer times in train share the rare code (default 10)")
    parser.add_argument("--keep-purchase-without-click", action="store_true",
                        help="keep purchase-without-click rows (dropped and counted by default)")
    parser.add_argument("--lenient", action="store_true",
                        help="skip bad input lines (raw or processed CSV; counted by kind, "
                             "with examples, in meta.json and the report) instead of "
                             "stopping at the first")
    parser.add_argument("--out-of-core", choices=("auto", "on", "off"), default="auto",
                        help="raw data: encode to a memory-mapped .npy cache (on), in memory "
                             "(off), or by the cache's size (auto, the default)")


def out_of_core_setting(args) -> bool | None:
    return {"auto": None, "on": True, "off": False}[getattr(args, "out_of_core", "auto")]


def data_options(args) -> dict:
    """`load()` keywords from the options of add_data_arguments: every command passes them all,
    so an option shown in --help is never silently ignored."""
    from bench.ranges import check_option

    # Checked here, before any data is read: every command passes through this function.
    check_option("--min-count", args.min_count, low=1)
    check_option("--data-seed", args.data_seed, low=0, high=2**32 - 1)
    return {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.data_seed,
            "min_count": args.min_count,
            "keep_purchase_without_click": args.keep_purchase_without_click,
            "lenient": args.lenient, "out_of_core": out_of_core_setting(args)}


def add_parser(sub) -> None:
    from bench.profiles import DEFAULT_PROFILE, PROFILES

    parser = sub.add_parser("run", help="train and evaluate models, write results and report")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true", help="every registered model")
    chosen.add_argument("--models", nargs="+", metavar="GLOB",
                        help="glob(s) over family/name, e.g. 'baselines/*' 'neural/mmoe'")
    add_data_arguments(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help=f"budgets and synthetic data size (default {DEFAULT_PROFILE})")
    parser.add_argument("--seeds", help="comma-separated model seeds (default: the profile's)")
    parser.add_argument("--threads", type=int, help="threads per model (default: the profile's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile budget (bench/profiles.py), e.g. --set "
                             "neural_max_epochs=2, or a neural setting (neural/config.py), "
                             "e.g. --set pooling=sum")
    parser.add_argument("--out", help="run folder (default reports/runs/<utc>-<data>-<profile>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an existing --out folder")
    parser.add_argument("--resume", action="store_true",
                        help="keep an existing --out folder's results and run what is missing")
    parser.add_argument("--no-tuned", action="store_true",
                        help="fit every model with its defaults, even where a tuned file "
                             "(tuned/<dataset>-<profile>.json, `python -m bench tune`) exists")
    parser.add_argument("--no-report", action="store_true", help="skip building the report")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the serving latency measured on each fitted model (1 "
                             "thread, N = 1 and 1,000; bench/run_latency.py)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--engine", default="local", choices=("local", "dask", "torchrun"),
                        help="where models train: this process (default), a Dask cluster "
                             "(GBDT) or torchrun processes (neural); see bench/distributed")
    parser.add_argument("--workers", type=int, default=2,
                        help="Dask workers of the local cluster / torchrun processes (default 2)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler of a running cluster, e.g. tcp://host:8786 "
                             "(default: a local cluster of --workers processes)")
    parser.set_defaults(handler=handle)


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


def split_settings(overrides: dict) -> tuple[dict, dict]:
    """--set pairs as (profile budgets, neural settings); a key that is neither is an error.

    Neural settings reach every neural model (FitContext.extra); other models ignore them.
    """
    from dataclasses import fields

    from bench.profiles import Profile
    from neural.config import NeuralConfig  # dataclasses only: no torch import

    budgets = {f.name for f in fields(Profile)}
    neural = {f.name for f in fields(NeuralConfig)}
    unknown = sorted(set(overrides) - budgets - neural)
    if unknown:
        raise ValueError(f"unknown --set key(s) {unknown}; profile budgets: {sorted(budgets)}; "
                         f"neural settings: {sorted(neural)}")
    if neural & set(overrides):
        NeuralConfig.with_overrides({k: v for k, v in overrides.items() if k in neural})
    return ({k: v for k, v in overrides.items() if k in budgets},
            {k: v for k, v in overrides.items() if k in neural})


def new_run_dir(name: str) -> Path:
    """A folder of its own under reports/runs/, named by the UTC second; a run that starts in
    the same second as another (or finds the name taken) gets -2, -3, ...: mkdir either
    creates the folder or fails, so two processes never get the same one."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = REPORTS_ROOT / "runs"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        run_dir = root / (f"{stamp}-{name}" + (f"-{attempt}" if attempt > 1 else ""))
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {root} for {stamp}-{name}")


def prepare_run_dir(out: str | None, name: str, overwrite: bool, resume: bool) -> Path:
    """The run folder, held by this process until it exits (bench.folder_lock.claim): a second
    run given the same --out stops with an error naming the first's PID."""
    from bench.folder_lock import claim
    from bench.harness import META_FILE, RESULTS_FILE

    run_dir = new_run_dir(name) if out is None else Path(out)
    claim(run_dir)
    results = run_dir / RESULTS_FILE
    if results.exists() and not (overwrite or resume):
        raise ValueError(f"{run_dir} already holds results; pass --overwrite or --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for stale in (results, run_dir / META_FILE):
            stale.unlink(missing_ok=True)
    return run_dir


# What must not change between a run and its --resume: results of other data, budgets or
# network settings would be pooled into one mean and one "paired" comparison.
RESUME_MUST_MATCH = ("fingerprint", "profile", "neural_settings")


def check_resumable(run_dir: Path, previous: dict, fingerprint: str | None, profile: dict,
                    neural_settings: dict) -> None:
    """fingerprint None: check the rest only (before the data is loaded, which can take long)."""
    now = {"fingerprint": fingerprint, "profile": profile, "neural_settings": neural_settings}
    now = json.loads(json.dumps(now, default=str))  # compare as meta.json stores them
    differ = [key for key in RESUME_MUST_MATCH if key in previous and now[key] is not None
              and previous[key] != now[key]]
    if differ:
        detail = "; ".join(f"{key}: {previous[key]!r} then, {now[key]!r} now" for key in differ)
        raise ValueError(f"cannot --resume {run_dir}: its results were made with another "
                         f"{', '.join(differ)} ({detail}); use a new --out or the same "
                         "--dataset/--data-dir/--profile/--set as that run")


def resumed_meta(previous: dict, current: dict) -> dict:
    """meta.json of a resumed run: this invocation's fields, the union of seeds and models,
    the earlier invocations kept, and latency runs appended to the folder kept."""
    merged = dict(current)
    merged["seeds"] = sorted(set(previous.get("seeds") or []) | set(current["seeds"]))
    merged["models"] = sorted(set(previous.get("models") or []) | set(current["models"]))
    earlier = previous.get("earlier_invocations") or []
    merged["earlier_invocations"] = earlier + [
        {k: previous.get(k) for k in ("command", "git_commit", "seeds", "models",
                                      "started_utc", "finished_utc")}]
    if previous.get("latency_runs"):
        merged["latency_runs"] = previous["latency_runs"]
    return merged


def link_latest(run_dir: Path) -> None:
    """reports/latest points at the newest run folder under reports/runs/ (a relative symlink,
    replaced atomically); a folder elsewhere (--out /tmp/...) leaves the link alone."""
    if (REPORTS_ROOT / "runs").resolve() not in Path(run_dir).resolve().parents:
        return
    latest = REPORTS_ROOT / "latest"
    try:
        target = os.path.relpath(run_dir.resolve(), REPORTS_ROOT.resolve())
        tmp = REPORTS_ROOT / ".latest.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, latest)
    except OSError as error:
        print(f"note: could not link reports/latest: {error}", file=sys.stderr)


def handle(args, argv) -> int:
    from bench import atomic, harness, meta, tuned_config
    from bench.data.loader import load
    from bench.profiles import get_profile
    from bench.ranges import check_option
    from bench.registry import select

    profile_settings, neural_settings = split_settings(parse_overrides(args.set))
    profile = get_profile(args.profile).with_overrides(profile_settings)
    # --seeds and --threads are checked against the profile's ranges but not stored in it:
    # a --resume with more seeds must still find the same profile.
    chosen = profile.with_overrides({k: v for k, v in (("seeds", args.seeds),
                                                       ("threads", args.threads))
                                     if v is not None})
    seeds, threads = chosen.seeds, chosen.threads
    check_option("--workers", args.workers, low=1)
    if args.engine == "torchrun":  # every rank runs this command again, under torchrun
        from bench.distributed.engines import launch_torchrun

        return launch_torchrun(argv[1:], args.workers)
    specs = select(None if args.all else args.models)
    if args.engine == "dask":
        from bench.distributed.engines import dask_specs

        specs = dask_specs(specs, args.scheduler, args.workers)
    workers = args.workers if args.engine != "local" else 1
    progress = not args.quiet
    early_meta = Path(args.out) / harness.META_FILE if args.resume and args.out else None
    if early_meta is not None and early_meta.exists():  # say so before loading the data
        check_resumable(early_meta.parent, json.loads(early_meta.read_text()), None,
                        profile.__dict__, neural_settings)
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
        check_resumable(run_dir, previous, data.fingerprint, profile.__dict__, neural_settings)
    selected = [s.key for s in specs]
    # A resumed folder keeps its successful (model, seed) pairs; only the others run.
    # A pair cut between its task records by a crash runs again (harness.trim_for_resume).
    done = harness.trim_for_resume(run_dir) if args.resume else frozenset()
    configs = tuned_config.configs_for_run(data.name, data.fingerprint, profile.name,
                                           selected, not args.no_tuned, args.engine)
    run_meta = meta.collect(argv, dataset=data.name, fingerprint=data.fingerprint,
                            data_info=data.info, vocab_sizes=data.vocab_sizes,
                            profile=profile.__dict__, seeds=list(seeds), threads=threads,
                            models=selected, engine=args.engine,
                            workers=workers, neural_settings=neural_settings,
                            configs={k: c["config_file"] or f"default: {c['config_why']}"
                                     for k, c in configs.items()},
                            started_utc=harness.utc_now())
    if previous is not None:
        run_meta = resumed_meta(previous, run_meta)
    atomic.write_json(meta_path, run_meta, indent=2, sort_keys=True, default=str)
    latency = _latency_step(args, run_dir, data, profile, progress)
    records = harness.run_suite(specs, data, profile, seeds, run_dir, threads, progress,
                                extra=neural_settings, engine=args.engine, workers=workers,
                                done=done, on_fitted=latency, configs=configs)
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


def build_report(run_dir: Path) -> None:
    try:
        from bench.report import build
    except ModuleNotFoundError:
        return
    paths = build(run_dir)
    for path in paths:
        print(f"report: {path}")
