"""`bench run --jobs N`: N (model, seed) fits at once, in forked worker processes.

On 2 cores one 2-thread fit of these small networks keeps about 1.3 cores busy; two 1-thread
fits keep both. Each worker runs the harness's own `run_one` on the data the parent loaded
(inherited by fork, not copied or reloaded) and sends back the records; the parent appends
them as each pair finishes, so a killed run resumes as before. Serving latency is measured
by the parent after every fit has finished, on the models the workers sent back (the first
seed of each model), one at a time and with nothing else running: the latency figures are
taken as in a one-job run, never beside a fit.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor, as_completed

# The data and settings the workers fit with, set before the pool forks (see module doc).
_SHARED: dict = {}


def _fit_pair(spec, seed: int, config, keep_model: bool):
    """In a worker: one pair's records, and its fitted model pickled (or the reason it could
    not be) when the parent measures its latency."""
    kept = {}

    def keep(spec, seed, model):
        try:
            kept["model"] = pickle.dumps(model)
        except Exception as error:  # measured as a latency error, not a lost pair
            kept["error"] = ("the fitted model could not be sent to the measuring process: "
                             f"{type(error).__name__}: {error}")

    shared = _SHARED
    records = shared["run_one"](spec, shared["data"], shared["profile"], seed,
                                shared["threads"], False, shared["extra"], "local", 1,
                                keep if keep_model else None, config)
    return records, kept


def run_pairs(run_one, pairs, data, profile, threads: int, jobs: int, extra, configs,
              on_fitted, on_records) -> None:
    """Fit `pairs` [(spec, seed)] `jobs` at a time with the harness's `run_one` (passed in:
    the harness imports this module); `on_records(spec, seed, records)` as each finishes,
    then `on_fitted(spec, seed, model)` for the first seed of each model (a
    bench.run_latency.RunLatency: its `unmeasured` records a model that could not be sent)."""
    _SHARED.update(run_one=run_one, data=data, profile=profile, threads=threads, extra=extra)
    first_seed = {}
    for spec, seed in pairs:
        first_seed.setdefault(spec.key, seed)
    kept = {}
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_fit_pair, spec, seed, (configs or {}).get(spec.key),
                                   on_fitted is not None and first_seed[spec.key] == seed):
                       (spec, seed) for spec, seed in pairs}
            for future in as_completed(futures):
                spec, seed = futures[future]
                records, sent = future.result()
                on_records(spec, seed, records)
                if sent:  # the first seed's model, fitted without error
                    kept[spec.key] = (spec, sent)
    finally:
        _SHARED.clear()
    for key, seed in first_seed.items():  # registry order, as a one-job run measures them
        if key not in kept:
            continue
        spec, sent = kept[key]
        if "model" in sent:
            on_fitted(spec, seed, pickle.loads(sent["model"]))
        else:
            on_fitted.unmeasured(spec, seed, sent["error"])
