"""Command-line options several commands share: the data a command loads, the run a
model set trains under, and `--set` settings."""

from __future__ import annotations


def add_data_arguments(parser) -> None:
    """Data options shared by every command that loads a data set."""
    from ccp.data.loader import DATASETS

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
    from ccp.ranges import check_option

    # Checked here, before any data is read: every command passes through this function.
    check_option("--min-count", args.min_count, low=1)
    check_option("--data-seed", args.data_seed, low=0, high=2**32 - 1)
    return {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.data_seed,
            "min_count": args.min_count,
            "keep_purchase_without_click": args.keep_purchase_without_click,
            "lenient": args.lenient, "out_of_core": out_of_core_setting(args)}


def add_run_arguments(parser) -> None:
    """The options of `python -m bench run` (also parsed by every torchrun rank)."""
    from ccp.profiles import DEFAULT_PROFILE, PROFILES

    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true", help="every registered model")
    chosen.add_argument("--models", nargs="+", metavar="GLOB",
                        help="glob(s) over family/name, e.g. 'baselines/*' 'neural/mmoe'")
    add_data_arguments(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help=f"budgets and synthetic data size (default {DEFAULT_PROFILE})")
    parser.add_argument("--seeds", help="comma-separated model seeds (default: the profile's)")
    parser.add_argument("--threads", type=int, help="threads per model (default: the profile's)")
    parser.add_argument("--jobs", type=int,
                        help="(model, seed) fits at once, each in its own process with "
                             "threads // jobs threads (default: the profile's jobs: 2 on "
                             "small, 1 on tiny); serving latency is measured after all fits")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile budget (ccp/profiles.py), e.g. --set "
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


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


def split_settings(overrides: dict, specs=()) -> tuple[dict, dict, dict]:
    """--set pairs as (profile budgets, neural settings, model keywords), each converted to its
    type and checked once, here; a key that is none of them is an error listing them all.

    Neural settings reach every neural model (FitContext.extra); other models ignore them.
    Model keywords (a constructor's optional arguments, e.g. aitm's calibrator_weight,
    mmoe's cvr_loss: `python -m bench list --settings MODEL`) reach the models of `specs` that
    take them (`with_model_keywords`); reading them imports those models' modules, so it is
    done only when a key is neither a budget nor a neural setting.
    """
    from dataclasses import fields

    from ccp.profiles import Profile
    from neural.config import NeuralConfig  # dataclasses only: no torch import

    budgets = {f.name for f in fields(Profile)}
    neural = {f.name for f in fields(NeuralConfig)}
    rest = set(overrides) - budgets - neural
    keywords = {}
    for spec in specs if rest else ():
        for name, value in spec.keywords().items():
            keywords.setdefault(name, value)
    unknown = sorted(rest - set(keywords))
    if unknown:
        raise ValueError(f"unknown --set key(s) {unknown}; profile budgets: {sorted(budgets)}; "
                         f"neural settings: {sorted(neural)}; keywords of the selected models: "
                         f"{sorted(set(keywords) - budgets - neural)}")
    # Converted, range-checked and checked as a whole config (__post_init__) once, here.
    given = [k for k in overrides if k in neural]
    config = NeuralConfig.with_overrides({k: overrides[k] for k in given})
    neural_settings = {k: getattr(config, k) for k in given}
    return ({k: v for k, v in overrides.items() if k in budgets}, neural_settings,
            {k: keyword_value(k, keywords[k], overrides[k]) for k in sorted(rest)})


def keyword_value(name: str, registered, text):
    """A model keyword's --set text as the type of its registered value (a text where that is
    a text or None, a number where the text is one)."""
    if not isinstance(text, str):
        return text
    try:
        if isinstance(registered, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if isinstance(registered, int):
            return int(text)
        if isinstance(registered, float):
            return float(text)
    except ValueError:
        raise ValueError(f"setting {name}={text} is not {type(registered).__name__} like its "
                         f"registered value {registered!r}") from None
    try:
        return float(text)
    except ValueError:
        return None if text.lower() == "none" else text


def with_model_keywords(configs: dict, specs, keywords: dict) -> dict:
    """Each model's configuration (bench.tuned_config) with the --set keywords it takes added
    to its constructor settings (over a tuned value) and recorded as `set_keywords`."""
    if not keywords:
        return configs
    out = dict(configs)
    for spec in specs:
        taken = {k: v for k, v in keywords.items() if k in spec.keywords()}
        if taken:
            config = dict(configs.get(spec.key) or {})
            settings = dict(config.get("settings") or {})
            settings["model"] = {**settings.get("model", {}), **taken}
            out[spec.key] = {**config, "settings": settings, "set_keywords": taken}
    return out
