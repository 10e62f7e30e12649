"""pytest-benchmark of neural training steps, run by hand (marked slow).

    pytest tests/benchmarks/test_train_throughput.py -m slow --benchmark-json out.json

The issue-4 configuration: MMoE, 4 experts [256, 128], embedding 16, towers [64], batch 2048,
2 threads, on the default (small) synthetic data. One benchmark round is one training step;
`extra_info` carries samples/s. `python -m bench throughput` measures the same steps and also
reports CPU-time figures for a shared machine.
"""

from __future__ import annotations

import itertools

import pytest

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")

BATCH = 2048
THREADS = 2


@pytest.fixture(scope="module")
def small_data():
    from ccp.data.loader import load

    return load("synthetic", None, synth_profile="small", seed=0, progress=False)


@pytest.mark.parametrize("model", ["mmoe", "esmm", "ple"])
def test_training_step(benchmark, small_data, model):
    from bench.registry import get
    from neural.config import NeuralConfig
    from neural.inputs import TensorSplit
    from neural.trainer import Trainer, setup_torch

    setup_torch(THREADS, 0)
    ranker = get(f"neural/{model}").build()
    config = NeuralConfig()
    network = ranker.build(small_data, config)
    train = TensorSplit(small_data.train, ranker.layout, config.pooling)
    trainer = Trainer(network, config, train, ranker.training_rows(small_data.train), BATCH, 0)
    network.train()
    batches = itertools.cycle([b for b in trainer.epoch_batches() if len(b) == BATCH])
    for _ in range(5):  # warm-up
        trainer.step(next(batches))
    benchmark.pedantic(lambda: trainer.step(next(batches)), rounds=40, iterations=1)
    benchmark.extra_info["samples_per_s"] = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["threads"] = THREADS
    assert benchmark.extra_info["samples_per_s"] > 0
