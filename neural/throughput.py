"""Training throughput of a neural model: samples per second of full training steps.

A step is what the trainer does per batch (slice the batch from column tensors, forward,
loss, backward, optimiser steps); data loading and tensor conversion come before the clock
starts, and validation is not included. Reports wall-clock samples/s and, because the
benchmark machine may be shared, also samples per second of process CPU time divided by the
thread count (what the run would reach with its cores to itself, if threads never idle) and
the load average around the measurement. The clock is ccp.timing's `Stopwatch`.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from ccp.timing import Stopwatch
from neural.config import NeuralConfig
from neural.inputs import TensorSplit
from neural.trainer import NeuralRanker, Trainer, layout_for, priors_of, setup_torch


def measure(spec, data, threads: int, batch_size: int = 2048, steps: int = 60,
            warmup: int = 10, overrides: dict | None = None, table_rows: int | None = None,
            seed: int = 0) -> dict:
    """Time `steps` training steps after `warmup` ones; a flat record of the result.

    `table_rows` pads the embedding table to that many rows (unused ones), to see what a
    full-size vocabulary costs each way of updating embeddings.
    """
    config = NeuralConfig.with_overrides(overrides)
    setup_torch(threads, seed)
    ranker: NeuralRanker = spec.build()
    layout = layout_for(data, config)
    if table_rows and table_rows > layout.n_rows:
        layout = dataclasses.replace(layout, n_rows=int(table_rows))
    network = ranker.network_cls(layout, config, priors_of(data.train), **ranker.params)
    train = TensorSplit(data.train, layout, config.pooling)
    ranker.network = network
    trainer = Trainer(network, config, train, ranker.training_rows(data.train), batch_size,
                      seed)
    network.train()
    batches = []
    while len(batches) < warmup + steps:
        # Full batches only, so every timed step has the same size.
        batches += [b for b in trainer.epoch_batches() if len(b) == batch_size]
    for rows in batches[:warmup]:
        trainer.step(rows)
    load_before = os.getloadavg()[0]
    with Stopwatch() as watch:
        for rows in batches[warmup:warmup + steps]:
            trainer.step(rows)
    wall, cpu = watch.wall_s, watch.cpu_s
    samples = steps * batch_size
    return {
        "model": spec.key, "dataset": data.name, "threads": threads, "batch_size": batch_size,
        "steps": steps, "warmup": warmup, "train_rows": len(trainer.train_rows),
        "table_rows": layout.n_rows, "n_params": sum(p.numel() for p in network.parameters()),
        "samples_per_s": samples / wall, "cpu_samples_per_s": samples / (cpu / threads),
        "step_ms": wall / steps * 1e3, "loadavg_before": load_before,
        "loadavg_after": os.getloadavg()[0], "torch": torch.__version__,
        **{f"config_{k}": (list(v) if isinstance(v, tuple) else v)
           for k, v in dataclasses.asdict(config).items()},
    }
