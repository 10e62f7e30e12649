"""Time of one training step (forward, loss, backward, Adam) per loss balancer: MMoE, default
sizes, random rows in the zoo tests' layout, tiny profile batch, 1 thread, interleaved repeats.

Run: PYTHONPATH=$PWD python tests/benchmarks/balancing_cost.py
"""

import os
import time

import numpy as np
import torch

from ccp.profiles import get_profile
from neural.config import NeuralConfig
from neural.inputs import FieldLayout, TensorSplit
from neural.models.mmoe import MMoE
from neural.trainer import Trainer, priors_of
from tests.test_neural import VOCAB, random_split

REPEATS, WARMUP = 30, 5


def main() -> None:
    torch.set_num_threads(1)
    batch_size = get_profile("tiny").neural_batch_size
    split = random_split("train", batch_size * 4, 64, np.random.default_rng(0))
    layout = FieldLayout.from_vocab_sizes(VOCAB)
    data = TensorSplit(split, layout, "mean")
    trainers = {}
    for kind in ("none", "fixed", "uncertainty", "gradnorm", "pcgrad"):
        torch.manual_seed(0)
        net = MMoE(layout, NeuralConfig.with_overrides({"loss_balancing": kind}),
                   priors_of(split))
        trainers[kind] = Trainer(net, net.config, data, torch.arange(len(data)), batch_size, 0)
    rows = torch.arange(batch_size)
    times = {kind: [] for kind in trainers}
    for _ in range(REPEATS):
        for kind, trainer in trainers.items():
            start = time.perf_counter()
            trainer.step(rows)
            times[kind].append(time.perf_counter() - start)
    base = np.median(times["none"][WARMUP:])
    print(f"batch {batch_size}, 1 thread, load {os.getloadavg()[0]:.2f}")
    for kind, seconds in times.items():
        median = np.median(seconds[WARMUP:])
        print(f"{kind}: median {median * 1e3:.2f} ms/step, {median / base:.2f}x none")


if __name__ == "__main__":
    main()
