"""`python -m bench tune`: equal hyperparameter search per model, on validation only.

Writes the chosen settings, with every trial's validation score, to the data set's tuned file
(bench/tuned_config.py), which `python -m bench run` then uses. How the search works:
bench/tuning.py.
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    from bench.commands.options import add_data_arguments
    from bench.tuning import DEFAULT_TRIALS
    from ccp.profiles import DEFAULT_PROFILE, PROFILES

    parser = sub.add_parser("tune", help="search each model's declared space (Optuna) on "
                                         "validation; write the tuned file run uses")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true",
                        help="every registered model that has a search space")
    chosen.add_argument("--models", nargs="+", metavar="GLOB",
                        help="glob(s) over family/name, e.g. 'baselines/lgbm_*' 'neural/mmoe'")
    add_data_arguments(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help=f"budgets and synthetic data size (default {DEFAULT_PROFILE})")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"trials per model, the same for every model (default "
                             f"{DEFAULT_TRIALS}; the first is the model's defaults)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--threads", type=int, help="threads per fit (default: the profile's)")
    parser.add_argument("--storage", help="Optuna storage URL of the studies (default: an "
                                          "SQLite file in data/tuning/); an interrupted tuning "
                                          "resumes from it")
    parser.add_argument("--out", help="tuned file (default tuned/<dataset>-<profile>.json)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start the selected models' studies again, and replace a tuned "
                             "file made on other data")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from pathlib import Path

    from bench import meta, tuned_config, tuning
    from bench.commands.options import data_options
    from bench.registry import select
    from ccp.data.loader import load
    from ccp.profiles import get_profile
    from ccp.search_space import space_for

    if args.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {args.trials}")
    profile = get_profile(args.profile)
    specs = [s for s in select(None if args.all else args.models) if space_for(s)]
    if not specs:
        raise ValueError("none of the selected models has a search space (see each spec's "
                         "untuned_why)")
    progress = not args.quiet
    data = load(**{**data_options(args), "synth_profile": profile.synth_profile,
                   "progress": progress})
    path = Path(args.out) if args.out else tuned_config.tuned_path(data.name, profile.name)
    # Written at once: a file made on other data is replaced now, not after the first model
    # (whose write reads the file again and would find the other data's fingerprint).
    tuned_config.write(path, _existing(path, data, profile.name, args.overwrite))
    storage = args.storage or tuning.default_storage(data.name, profile.name)
    run_meta = meta.collect(argv)  # the commit and command the tuning starts from
    for spec in specs:
        if args.overwrite:
            _delete_study(storage, f"{data.name}-{profile.name}-{spec.key}")
        if progress:
            print(f"tuning {spec.key}: {args.trials} trials ({storage})", file=sys.stderr)
        entry = tuning.tune_model(spec, data, profile, storage, args.trials, args.seed,
                                  args.threads, progress)
        entry.update({k: run_meta[k] for k in ("command", "git_commit", "git_dirty")},
                     utc=_utc(), storage=_shown(storage))
        # Read again before adding: another tune process may have written its models since.
        content = _existing(path, data, profile.name, overwrite=False)
        content["models"][spec.key] = entry
        tuned_config.write(path, content)  # after every model: an interruption keeps them
        print(f"{spec.key}: best validation {entry['best_valid_score']:.5f} (default "
              f"{entry['default_valid_score']}), {entry['trials']} trials, "
              f"{entry['n_pruned']} pruned, {entry['wall_s']:.0f} s")
    print(f"tuned: {path}")
    return 0


def _existing(path, data, profile: str, overwrite: bool) -> dict:
    """The file's content to add to: kept if made on the same data, else replaced only with
    --overwrite."""
    from bench import tuned_config

    fresh = {"format_version": tuned_config.FORMAT_VERSION, "dataset": data.name,
             "profile": profile, "fingerprint": data.fingerprint, "models": {}}
    if not path.exists():
        return fresh
    content = tuned_config.read(path)
    if content["fingerprint"] == data.fingerprint:
        return content
    if not overwrite:
        raise ValueError(f"{path} holds settings tuned on other data (fingerprint "
                         f"{content['fingerprint']}, this data's is {data.fingerprint}); pass "
                         "--overwrite to replace it, or --out another file")
    return fresh


def _delete_study(storage: str, name: str) -> None:
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass  # no such study yet


def _shown(url: str) -> str:
    """A storage URL as the committed file shows it: no credentials, no local path prefix."""
    from urllib.parse import urlsplit, urlunsplit

    from bench.tuned_config import TUNED_ROOT

    url = url.replace(f"sqlite:///{TUNED_ROOT.parent}/", "sqlite:///")
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _utc() -> str:
    from bench.harness import utc_now

    return utc_now()
