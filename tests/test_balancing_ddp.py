"""Loss balancers in a two-rank gloo group (what torchrun runs): every rank ends a step with the
same gradients, and PCGrad's are the projection of the ranks' averaged per-term gradients."""

from __future__ import annotations

import os
import socket
import sys

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_on_every_rank(tensor: torch.Tensor) -> bool:
    first = tensor.clone()
    dist.broadcast(first, 0)
    agree = torch.tensor([float(torch.equal(first, tensor))])
    dist.all_reduce(agree, op=dist.ReduceOp.MIN)
    return bool(agree)


def rank_steps(rank: int, port: int, failures) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        for kind in ("pcgrad", "gradnorm"):
            rank_step(rank, kind, failures)
    finally:
        dist.destroy_process_group()


def rank_step(rank: int, kind: str, failures) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from test_neural import batch_of, build, random_split

    from neural import balancing
    from neural.registry import SPECS

    spec = next(s for s in SPECS if s.name == f"mmoe_{kind}")
    network = build(spec, embedding_gradients="dense")  # the same weights on both ranks
    parallel = DistributedDataParallel(network)  # as bench/distributed/ddp_neural.py
    batch = batch_of(random_split("train", 64, 8, np.random.default_rng(rank)))
    out = parallel(batch)
    terms = network.loss_terms(out, batch)
    local = [torch.autograd.grad(t, list(network.parameters()), retain_graph=True,
                                 allow_unused=True) for t in terms.values()]
    balancing.backward(parallel, out, batch)
    for name, p in network.named_parameters():
        if p.grad is not None and not same_on_every_rank(p.grad):
            failures.append(f"{kind}: rank {rank}'s {name} gradient differs")
    if kind == "pcgrad":
        # The projection of the averaged per-term gradients, on the weights both reach.
        both = [k for k, _ in enumerate(network.parameters())
                if all(g[k] is not None for g in local)]
        flat = [torch.cat([g[k].reshape(-1) for k in both]) for g in local]
        for g in flat:
            dist.all_reduce(g)
            g /= 2
        if torch.dot(flat[0], flat[1]) >= 0:  # else projecting first would give the same
            failures.append("pcgrad: the averaged per-term gradients do not conflict")
        expected = sum(balancing.project_conflicts(flat, [[1], [0]]))
        params = list(network.parameters())
        got = torch.cat([params[k].grad.reshape(-1) for k in both])
        if not torch.allclose(got, expected, rtol=1e-5, atol=1e-7):
            failures.append(f"pcgrad: rank {rank}'s gradient is not the projection of the "
                            "averaged per-term gradients")


def test_two_ranks_end_a_step_with_the_same_gradients():
    with mp.Manager() as manager:
        failures = manager.list()
        mp.spawn(rank_steps, args=(free_port(), failures), nprocs=2)
        assert list(failures) == []
