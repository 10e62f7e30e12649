"""GBDT on a Dask cluster: each library's Dask API over partitions of the encoded cache.

`DaskTreeModel` is `baselines.trees.TreeModel` with its boosters trained on a Dask cluster: the
scheduler at `scheduler` (a real cluster), or a LocalCluster of `workers` processes. Each Dask
partition is a contiguous row range of the memory-mapped encoded cache
(ccp.data.stream_encode), which the worker opens itself and turns into features, so rows are
never shipped from the client: the cache folder must be readable at the same path on every
worker (a shared file system on a real cluster).

Features: the encodings without labels ("count", "native") are fitted exactly in one chunked
pass on the client (count tables are small: one number per code) and applied per partition.
The out-of-fold target encoding of the local models is not distributed here, so the Dask
engine uses "count" unless told otherwise; its records say which encoding ran.

Training and early stopping on the cluster are the library adapter's `dask_train`
(baselines/tree_libraries.py): xgboost.dask stops early itself; lightgbm.dask cannot, so the
LightGBM adapter picks the best round afterwards on the client, on every validation row of the
task (`task_features`), as the local models stop.
"""

from __future__ import annotations

import atexit
import functools
import os
import time

import numpy as np

from baselines.tree_budget import TreeBudget
from baselines.tree_features import (
    HIGH_CARDINALITY,
    Lookup,
    TreeFeatures,
    field_codes,
)
from baselines.trees import TreeModel
from ccp.data import schema
from ccp.tasks import TASKS

# Local-cluster workers inherit this: OpenMP threads that spin while they wait starve the
# other worker's LightGBM socket exchange when workers share cores (measured: a 2-worker
# cluster on 2 cores stalled for minutes on the tiny profile without it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_ENCODING = "count"
DISTRIBUTED_ENCODINGS = ("count", "native")
PARTITION_ROWS = 2_000_000  # rows per Dask partition, at most (float64 features: ~0.6 GB)
CHUNK_ROWS = 1 << 20  # rows per chunk when the client counts codes

_CLIENTS: dict = {}


def get_client(scheduler: str | None, workers: int, threads: int):
    """A Dask client: to `scheduler`, or to a LocalCluster kept for the life of the process."""
    key = (scheduler, workers, threads)
    if key not in _CLIENTS:
        from distributed import Client, LocalCluster

        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=threads,
                                   processes=True, dashboard_address=None,
                                   silence_logs=int(os.environ.get("CCPBENCH_DASK_LOG_LEVEL", 50)))
            client = Client(cluster)
        _CLIENTS[key] = client
    return _CLIENTS[key]


@atexit.register
def close_clients() -> None:
    for client in _CLIENTS.values():
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    _CLIENTS.clear()


def cache_folder(data) -> str:
    """The encoded-cache folder a memory-mapped data set was loaded from."""
    folder = (data.info.get("encoded_cache") or {}).get("folder")
    if folder is None:
        raise ValueError("the Dask engine reads partitions of the encoded cache: load the data "
                         "with out_of_core=True (python -m bench run --engine dask does)")
    return folder


# ---------------------------------------------------------------- on the workers


@functools.lru_cache(maxsize=4)
def _open_cache(folder: str):
    from ccp.data.stream_encode import load_encoded

    return load_encoded(folder, name="dask-partition")


def partition_features(folder: str, split_name: str, start: int, stop: int,
                       encoder: TreeFeatures, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of one task's rows among rows start:stop of a cached split."""
    split = _open_cache(folder).splits[split_name].slice_rows(start, stop, own_requests=False)
    rows, labels = TASKS[task].rows_and_labels(split)
    return encoder.transform(split.take(rows)), labels.astype(np.float64)


# ---------------------------------------------------------------- on the client


def fit_count_encoder(train, vocab_sizes: dict, encoding: str, seed: int) -> TreeFeatures:
    """A TreeFeatures whose count tables are counted chunk by chunk: the same tables as its own
    fit on the whole split, which needs every code of every row in memory at once."""
    if encoding not in DISTRIBUTED_ENCODINGS:
        raise ValueError(f"the Dask engine supports the label-free encodings "
                         f"{DISTRIBUTED_ENCODINGS}, not {encoding!r}")
    encoder = TreeFeatures(encoding, seed=seed)
    if encoder.uses_count:
        counts = {name: np.zeros(int(vocab_sizes.get(name, 2)), dtype=np.int64)
                  for name in HIGH_CARDINALITY}
        for start in range(0, len(train), CHUNK_ROWS):
            chunk = train.slice_rows(start, min(start + CHUNK_ROWS, len(train)),
                                     own_requests=False)
            for name, codes in field_codes(chunk, HIGH_CARDINALITY).items():
                found = np.bincount(codes, minlength=len(counts[name]))
                if len(found) > len(counts[name]):  # a code past the vocabulary: grow
                    counts[name] = np.pad(counts[name], (0, len(found) - len(counts[name])))
                counts[name] += found
        for name, table in counts.items():
            seen = np.flatnonzero(table)
            values = table[seen].astype(np.float64)
            values[seen == schema.CODE_RARE] = 0.0  # each rare id was seen < min_count times
            values[seen == schema.CODE_MISSING] = np.nan
            encoder.count_tables[name] = Lookup(seen, values, 0.0)
    encoder.transform(train.slice_rows(0, min(1, len(train)), own_requests=False))  # names
    return encoder


def _bounds(n: int, workers: int, partition_rows: int) -> list[tuple[int, int]]:
    """Contiguous row ranges: at least one per worker, at most partition_rows each."""
    parts = max(workers, -(-n // partition_rows))
    parts = -(-parts // workers) * workers  # a multiple of the workers, to balance them
    edges = np.linspace(0, n, parts + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def dask_task_arrays(client, folder: str, split, split_name: str, encoder_future, task: str,
                     n_features: int, partition_rows: int = PARTITION_ROWS):
    """Dask arrays (X, y) of a task's rows of a cached split, one block per partition, and
    the futures they are made of.

    Partitions are placed round-robin on the workers, each built where it will be used: the
    scheduler alone may put two small partitions on one worker, which then trains alone."""
    import operator

    import dask.array as da
    from distributed import wait

    workers = sorted(client.scheduler_info()["workers"])
    click = split.click
    blocks_x, blocks_y, futures = [], [], []
    for i, (start, stop) in enumerate(_bounds(len(split), len(workers), partition_rows)):
        n = int(np.count_nonzero(click[start:stop])) if TASKS[task].clicked_only else stop - start
        where = {"workers": [workers[i % len(workers)]], "allow_other_workers": False}
        part = client.submit(partition_features, folder, split_name, start, stop,
                             encoder_future, task, **where)
        x, y = (client.submit(operator.getitem, part, k, **where) for k in (0, 1))
        futures += [x, y]
        blocks_x.append(da.from_delayed(x, shape=(n, n_features), dtype=np.float64))
        blocks_y.append(da.from_delayed(y, shape=(n,), dtype=np.float64))
    wait(futures)
    # The caller holds `futures` while it trains: a dask array built on futures does not
    # keep them alive, and the scheduler forgets data no client holds.
    return da.concatenate(blocks_x), da.concatenate(blocks_y), futures


def task_features(split, task: str, encoder: TreeFeatures):
    """(features, or None without rows; labels) of the task's rows of `split`, on the client."""
    rows, labels = TASKS[task].rows_and_labels(split)
    return (encoder.transform(split.take(rows)) if len(rows) else None), labels


class DaskTreeModel(TreeModel):
    """A registered tree model trained with its library's Dask API (the adapter's dask_train)."""

    def __init__(self, library: str = "lightgbm", mode: str = "ctr_x_cvr",
                 config: str = "default", encoding: str | None = None,
                 scheduler: str | None = None, workers: int = 2,
                 partition_rows: int = PARTITION_ROWS):
        super().__init__(library, mode, config, encoding or DEFAULT_ENCODING)
        if not hasattr(self.lib, "dask_train"):
            raise ValueError(f"the Dask engine cannot train tree library {library!r}: its "
                             "adapter has no dask_train (baselines/tree_libraries.py)")
        if self.encoding not in DISTRIBUTED_ENCODINGS:
            raise ValueError(f"the Dask engine supports encodings {DISTRIBUTED_ENCODINGS}, "
                             f"not {self.encoding!r}")
        self.scheduler, self.requested_workers = scheduler, workers
        self.partition_rows = partition_rows
        self.engine, self.workers = "dask", workers

    def fit(self, data, ctx) -> None:
        started = time.perf_counter()
        self.client = get_client(self.scheduler, self.requested_workers, ctx.threads)
        self.workers = len(self.client.scheduler_info()["workers"])
        self.connect_s = time.perf_counter() - started
        super().fit(data, ctx)
        self.info.update({"engine": "dask", "workers": self.workers,
                          "scheduler": self.scheduler or "LocalCluster",
                          "connect_s": round(self.connect_s, 3),
                          "encoding_default_why": "label-free encodings are fitted exactly "
                                                  "chunk by chunk; see bench/distributed/"
                                                  "dask_gbdt.py"})

    def _fit_task(self, task: str, data, budget: TreeBudget, ctx) -> None:
        train = data.train
        if task not in self.encoders:
            self.encoders[task] = fit_count_encoder(train, data.vocab_sizes, self.encoding,
                                                    ctx.seed)
        encoder = self.encoders[task]
        rows, labels = TASKS[task].rows_and_labels(train)
        self.info[f"{task}_train_rows"] = int(len(rows))
        self.info[f"{task}_n_features"] = len(encoder.names)
        if len(rows) < 2 or labels.min() == labels.max():
            self.boosters[task] = None
            self.info[f"{task}_rounds"] = 0
            return
        client = self.client
        # hash=False: a fresh key, never one a previous model is still releasing
        [encoder_future] = client.scatter([encoder], broadcast=True, hash=False)
        arrays = {}
        for name, split in (("train", train), ("valid", data.valid)):
            arrays[name] = dask_task_arrays(client, cache_folder(data), split, name,
                                            encoder_future, task, len(encoder.names),
                                            self.partition_rows)
        held = [f for name in arrays for f in arrays[name][2]]
        arrays = {name: value[:2] for name, value in arrays.items()}
        valid_on_client = functools.partial(task_features, data.valid, task, encoder)
        booster, info = self.lib.dask_train(client, arrays, valid_on_client, encoder.names,
                                            encoder.categorical, budget, ctx.seed, ctx.threads)
        self.info.update({f"{task}_{key}": value for key, value in info.items()})
        del arrays, held, encoder_future  # the partitions and the encoder are released
        self.boosters[task] = booster
        self.info[f"{task}_rounds"] = int(self.lib.n_rounds(booster))
