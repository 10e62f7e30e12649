"""Memory of the in-memory and the out-of-core data paths, measured in fresh processes.

Steps, each in its own spawned child (so its peak is its own), on one converted data set:
  encode-memory   load(out_of_core=False): whole Parquet tables -> in-memory arrays
  encode-stream   load(out_of_core=True) with no encoded cache yet: the streaming encoder
  load-stream     load(out_of_core=True) of an existing encoded cache (memory-mapped)
  epoch-memory    encode-memory, then one epoch of a neural model (and its validation
                  scoring) on the whole split as tensors
  epoch-stream    load-stream, then the same epoch, chunk by chunk
  trees-memory    encode-memory, then fit a tree model (--tree-model, --tree-rounds rounds) on
                  every train row from the whole-split feature matrix
  trees-stream    load-stream, then the same fit from the libraries' out-of-core inputs
                  (baselines/tree_input.py: LightGBM Sequence, XGBoost QuantileDMatrix)

Reported per step: wall seconds, peak RSS (VmHWM: every resident page, including pages of the
memory-mapped cache, which the kernel can drop at any time) and peak anonymous memory
(RssAnon sampled every 50 ms: the memory that cannot be dropped, i.e. what must fit in RAM),
both read by ccp.memory. Models are fitted by the harness's fit (bench.harness.fit_model).

Command line:
    python -m bench.ooc_bench --data-dir DIR [--steps ...] [--model mmoe:MMoE] [--out F]
        [--tree-model lgbm_ctr_x_cvr] [--tree-rounds 20]
DIR holds the raw files of a synthetic or real data set (converted first if needed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import time
from pathlib import Path

STEPS = ("encode-memory", "encode-stream", "load-stream", "epoch-memory", "epoch-stream",
         "trees-memory", "trees-stream")


def _epoch(data, model: str, threads: int, batch_size: int, chunk_rows: int) -> dict:
    """One epoch of the neural network `model` ("module:Class" of neural.models), fitted by
    the harness's fit (bench.harness.fit_model)."""
    from bench.harness import fitted
    from ccp.model import ModelSpec
    from ccp.profiles import get_profile

    profile = get_profile("small").with_overrides(
        {"neural_max_epochs": 1, "neural_batch_size": batch_size,
         "neural_chunk_rows": chunk_rows})
    spec = ModelSpec(model, "neural", "neural.trainer:NeuralRanker", "out-of-core epoch",
                     params={"network": f"neural.models.{model}"})
    ranker = fitted(spec, data, profile, 0, threads)
    return {"train_rows": ranker.info["n_train_rows"], "chunks": ranker.info["train_chunks"],
            "history": ranker.info["history"]}


def _trees(data, model: str, threads: int, rounds: int) -> dict:
    """Fit a registered tree model with at most `rounds` rounds: the data path's memory, not
    the forest's accuracy, is measured (a forest of 63-leaf trees is a few MB)."""
    import ccp.data.chunks
    from bench.harness import fitted
    from bench.registry import get
    from ccp.data.npy_cache import is_memory_mapped
    from ccp.profiles import get_profile

    profile = get_profile("full").with_overrides({"gbdt_max_rounds": rounds})
    if not is_memory_mapped(data.train.click):
        ccp.data.chunks.AUTO_CHUNK_ROWS = 1 << 62  # the whole-matrix path, as before
    tree = fitted(get(model), data, profile, 0, threads)
    return {key: value for key, value in tree.info.items()
            if key.endswith(("_train_rows", "_valid_rows", "_input", "_rounds", "_n_features"))}


def _child(step: str, data_dir: str, model: str, threads: int, batch_size: int, queue,
           tree_model: str = "lgbm_ctr_x_cvr", tree_rounds: int = 20):
    try:
        from ccp.data.loader import load
        from ccp.memory import Sampler, peak_rss_bytes

        anonymous = Sampler("RssAnon", every_s=0.05)
        started = time.perf_counter()
        out_of_core = step.endswith("stream")
        data = load("aliccp", data_dir, progress=False, out_of_core=out_of_core)
        result = {"rows": {k: len(s) for k, s in data.splits.items()},
                  "load_s": round(time.perf_counter() - started, 2)}
        if step.startswith("epoch"):
            # The in-memory path as it was: the whole split as tensors (-1: never chunk).
            result["epoch"] = _epoch(data, model, threads, batch_size,
                                     0 if out_of_core else -1)
        if step.startswith("trees"):
            result["trees"] = _trees(data, tree_model, threads, tree_rounds)
        result["seconds"] = round(time.perf_counter() - started, 2)
        result["peak_anon_mib"] = round(anonymous.stop() / 1024, 1)
        result["peak_rss_mib"] = round(peak_rss_bytes() / 2**20, 1)
        queue.put(result)
    except BaseException as error:  # reported to the parent
        queue.put({"error": f"{type(error).__name__}: {error}"})


def measure(step: str, data_dir: Path, model: str = "mmoe:MMoE", threads: int = 2,
            batch_size: int = 2048, tree_model: str = "lgbm_ctr_x_cvr",
            tree_rounds: int = 20) -> dict:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; known: {STEPS}")
    if step == "encode-stream":  # measure the encoding itself, not a reuse of its cache
        for folder in (Path(data_dir) / "cache").glob("encoded-*"):
            shutil.rmtree(folder)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child,
                            args=(step, str(data_dir), model, threads, batch_size, queue,
                                  tree_model, tree_rounds))
    child.start()
    result = queue.get()
    child.join()
    if "error" in result:
        raise RuntimeError(f"{step} on {data_dir} failed: {result['error']}")
    return {"step": step, **result}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--model", default="mmoe:MMoE", help="neural.models module:Class")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--tree-model", default="lgbm_ctr_x_cvr",
                        help="registered tree model of the trees-* steps")
    parser.add_argument("--tree-rounds", type=int, default=20,
                        help="boosting rounds of the trees-* steps (memory, not accuracy)")
    parser.add_argument("--out", help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    from ccp.atomic import print_and_save
    from ccp.data import raw

    data_dir = Path(args.data_dir)
    if not raw.cache_is_current(data_dir, data_dir / "cache", {"lenient": False}):
        raw.convert_raw(data_dir, data_dir / "cache")  # not part of any step's figures
    results = []
    for step in args.steps:
        results.append(measure(step, data_dir, args.model, args.threads, args.batch_size,
                               args.tree_model, args.tree_rounds))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print_and_save({"data_dir": args.data_dir, "results": results}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
