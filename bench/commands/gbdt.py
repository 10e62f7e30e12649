"""`python -m bench gbdt`: the measurements behind the tree baselines' choices.

    python -m bench gbdt encodings --profile small   # validation/test AUC per feature encoding
    python -m bench gbdt latency --profile small     # library vs compiled predict, 1/100/1000 rows

Both train their models on the chosen data set and print a table; --out writes the figures as
JSON. The default encoding is the one with the best mean validation AUC (never test AUC).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from functools import partial
from pathlib import Path


def add_parser(sub) -> None:
    from baselines.tree_libraries import LIBRARIES
    from bench.commands.options import add_data_arguments
    from ccp.profiles import DEFAULT_PROFILE, PROFILES

    parser = sub.add_parser("gbdt", help="tree baselines: encoding and compiled-predict checks")
    parser.add_argument("what", choices=("encodings", "latency"))
    add_data_arguments(parser)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    parser.add_argument("--libraries", default=",".join(lib.name for lib in LIBRARIES),
                        help="encodings: tree libraries to compare (default all)")
    parser.add_argument("--encodings",
                        help="encodings: which to measure, comma-separated (default: every "
                             "encoding of baselines/tree_features.py, the chosen default too)")
    parser.add_argument("--tasks", default="ctr,cvr,ctcvr", help="encodings: which tasks")
    parser.add_argument("--models", nargs="+",
                        default=[f"{lib.short}_ctr_x_cvr" for lib in LIBRARIES],
                        help="latency: registered tree models to time")
    parser.add_argument("--rows", default="1,100,1000", help="latency: rows per predict call")
    parser.add_argument("--repeats", type=int, default=300, help="latency: timed calls per size")
    parser.add_argument("--seed", type=int, default=0, help="model seed")
    parser.add_argument("--threads", type=int, help="training threads (default: the profile's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile budget, e.g. --set gbdt_num_leaves=31")
    parser.add_argument("--out", help="write the figures to this JSON file")
    parser.set_defaults(handler=handle)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def handle(args, argv) -> int:
    from bench.commands.options import data_options, parse_overrides
    from ccp.data.loader import load
    from ccp.profiles import get_profile

    profile = get_profile(args.profile).with_overrides(parse_overrides(args.set))
    data = load(**data_options(args), synth_profile=profile.synth_profile, progress=False)
    threads = args.threads or profile.threads
    if args.what == "encodings":
        result = measure_encodings(data, profile, args.libraries.split(","),
                                   encodings_to_measure(args.encodings), args.tasks.split(","),
                                   args.seed, threads)
    else:
        result = measure_latency(data, profile, args.models,
                                 [int(n) for n in args.rows.split(",")], args.repeats,
                                 args.seed, threads)
    result = {"command": "python -m bench " + " ".join(argv), "dataset": data.name,
              "fingerprint": data.fingerprint, "profile": profile.name,
              "budget": {k: v for k, v in profile.__dict__.items() if k.startswith("gbdt_")},
              **result}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


def encodings_to_measure(option: str | None) -> list[str]:
    """The --encodings list; without it every encoding, so the default is measured too."""
    from baselines.tree_features import ENCODINGS

    return option.split(",") if option else list(ENCODINGS)


def _tree_spec(library, mode, encoding):
    """A tree model the registry need not hold (any library, task and encoding), as a spec."""
    from ccp.model import ModelSpec

    return ModelSpec(f"{library}_{mode}_{encoding}", "baselines", "baselines.trees:TreeModel",
                     "gbdt encodings", params={"library": library, "mode": mode,
                                               "encoding": encoding})


def _fit(spec, data, profile, seed, threads):
    """harness.fit_model on train and validation: (model, fit seconds)."""
    from bench.harness import fit_model

    return fit_model(spec, dataclasses.replace(data, test=None), profile, seed, threads,
                     progress=False)


def fit_registered(name, data, profile, seed, threads):
    """A registered tree model fitted as its spec says (library, mode, configuration,
    encoding), and the seconds it took."""
    from bench.registry import get

    return _fit(get(name), data, profile, seed, threads)


def measure_encodings(data, profile, libraries, encodings, tasks, seed, threads) -> dict:
    from ccp import metrics
    from ccp.tasks import TASKS

    rows = []
    for library in libraries:
        for encoding in encodings:
            for task in tasks:
                model, fit_s = _fit(_tree_spec(library, task, encoding), data, profile, seed,
                                    threads)
                row = {"library": library, "encoding": encoding, "task": task,
                       "fit_s": round(fit_s, 2), "rounds": model.info[f"{task}_rounds"]}
                for split in (data.valid, data.test):
                    scored = TASKS[task].scored(split, model.predict(split))
                    row[f"{split.name}_auc"] = metrics.auc(*scored)
                rows.append(row)
                _log(f"{library:9s} {encoding:18s} {task:6s} valid {row['valid_auc']:.4f} "
                     f"test {row['test_auc']:.4f} rounds {row['rounds']:4d} fit {fit_s:6.1f}s")
    mean_valid = {}
    for library in libraries:
        for encoding in encodings:
            scores = [r["valid_auc"] for r in rows
                      if r["library"] == library and r["encoding"] == encoding]
            mean_valid[f"{library}/{encoding}"] = sum(scores) / len(scores)
    overall = {e: sum(mean_valid[f"{lib}/{e}"] for lib in libraries) / len(libraries)
               for e in encodings}
    best = max(overall, key=overall.get)
    print(f"{'encoding':18s}  " + "  ".join(f"{lib:>9s}" for lib in libraries)
          + "  mean valid AUC")
    for e in encodings:
        print(f"{e:18s}  " + "  ".join(f"{mean_valid[f'{lib}/{e}']:9.4f}" for lib in libraries)
              + f"  {overall[e]:.4f}{'  <- best' if e == best else ''}")
    return {"rows": rows, "mean_valid_auc": overall, "best_by_valid": best}


def _timings(call, X, repeats) -> tuple[float, float]:
    """p50 and p99 ms of `repeats` calls, each timed alone after max(10, repeats // 10)
    untimed warm-up calls (caches, lazy initialisation)."""
    from ccp.timing import summary_ms, time_calls

    figures = summary_ms(time_calls(call, X, repeats, warmup=max(10, repeats // 10)))
    return figures["p50_ms"], figures["p99_ms"]


def measure_latency(data, profile, names, sizes, repeats, seed, threads) -> dict:
    import numpy as np

    rows = []
    for name in names:
        model, fit_s = fit_registered(name, data, profile, seed, threads)
        compile_s = model.compile()
        test = data.test
        features = model.features(test)
        library = model.score(features, threads=1)
        compiled = model.score(features, compiled=True, threads=1)
        diff = max(float(np.abs(library[k] - compiled[k]).max()) for k in library)
        rounds = {t: model.info[f"{t}_rounds"] for t in model.boosters}
        _log(f"{name} ({model.config} configuration): fit {fit_s:.1f}s, compile "
             f"{compile_s:.1f}s, rounds {rounds}, max |compiled - library| {diff:.2e} over "
             f"{len(test)} test rows")
        for n in sizes:
            # Different rows for each size, always from the test split.
            start = np.random.default_rng(n).integers(0, max(len(test) - n, 1))
            part = test.take(np.arange(start, start + n))
            X = model.features(part)
            assembly = _timings(model.features, part, repeats)
            lib_ms = _timings(partial(model.score, threads=1), X, repeats)
            fast_ms = _timings(partial(model.score, compiled=True, threads=1), X, repeats)
            row = {"model": name, "rows": n, "threads": 1, "repeats": repeats,
                   "library_p50_ms": lib_ms[0], "library_p99_ms": lib_ms[1],
                   "compiled_p50_ms": fast_ms[0], "compiled_p99_ms": fast_ms[1],
                   "speedup_p50": lib_ms[0] / fast_ms[0], "features_p50_ms": assembly[0],
                   "features_p99_ms": assembly[1], "max_abs_diff": diff,
                   "compile_s": compile_s, "rounds": rounds, "config": model.config}
            rows.append(row)
    print(f"{'model':16s} {'rows':>5s}  {'library p50/p99 ms':>19s}  {'compiled p50/p99 ms':>20s}"
          f"  {'speedup':>7s}  {'features p50 ms':>15s}")
    for r in rows:
        print(f"{r['model']:16s} {r['rows']:5d}  "
              f"{r['library_p50_ms']:8.3f} / {r['library_p99_ms']:7.3f}  "
              f"{r['compiled_p50_ms']:9.3f} / {r['compiled_p99_ms']:7.3f}  "
              f"{r['speedup_p50']:6.2f}x  {r['features_p50_ms']:15.3f}")
    return {"rows": rows, "timing": "1 thread, warm-up then `repeats` calls per size; model "
                                    "scoring timed apart from feature assembly"}
