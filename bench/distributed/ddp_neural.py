"""Neural models on torch.distributed: DistributedDataParallel over gloo (CPU), under torchrun.

    torchrun --nproc_per_node 2 -m bench.distributed.ddp_neural --models neural/mmoe ...
    python -m bench run --engine torchrun --workers 2 --models neural/mmoe ...   (launches it)

Every rank runs this module with the arguments of `python -m bench run`. Rank 0 prepares the
data first (synthetic generation, conversion, encoded cache) while the others wait, then every
rank memory-maps the encoded cache and reads only its own shard: a contiguous 1/world of the
train rows (then chunks of it, as a single process does out of core). Validation and test rows
are scored in shards too and gathered, so every rank sees the same validation AUC and takes the
same early-stopping decision. Rank 0 alone writes results, marked engine "torchrun" and the
number of workers (ranks).

Equivalence with one process: each rank's batch is the profile's batch size / world, and DDP
averages gradients, so a step sees the same number of rows as a single-process step; only the
order of rows differs. Ranks take the same number of steps per chunk (a rank with fewer
batches repeats its first ones), as DDP requires.

Embedding gradients: dense parameters are all-reduced by DDP. The embedding table is left out
of DDP when its gradient is sparse ("rows": RowAdam's per-batch rows, "sparse": a sparse COO
gradient) and all-reduced as a sparse tensor instead (gloo supports sparse all_reduce): only
the rows a batch touched travel, a few thousand of the table's millions. "dense" embeddings go
through DDP like every other parameter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ccp.tasks import MAIN_TASKS
from neural.trainer import NeuralRanker, Trainer

ENGINE = "torchrun"


def world() -> tuple[int, int]:
    return dist.get_rank(), dist.get_world_size()


def shard_bounds(n_rows: int, rank: int, size: int) -> tuple[int, int]:
    """Contiguous rows of one rank: sizes differ by at most one row."""
    return n_rows * rank // size, n_rows * (rank + 1) // size


class _Parallel(DistributedDataParallel):
    """DDP whose `loss` is the wrapped network's (the trainer calls network.loss)."""

    def loss(self, outputs, batch):
        return self.module.loss(outputs, batch)


class DdpTrainer(Trainer):
    """The shared Trainer with DDP's forward, sparse embedding all-reduce and equal steps."""

    def __init__(self, network, config, train, train_rows, batch_size, seed):
        super().__init__(network, config, train, train_rows, batch_size, seed)
        self.raw = network
        # The resolved update ("auto" is "rows" above neural.config.DENSE_TABLE_MAX_ROWS).
        self.sparse_table = network.inputs.gradients in ("rows", "sparse")
        if self.sparse_table:
            name = next(n for n, p in network.named_parameters() if p is network.inputs.table)
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(network, [name])
        self.network = _Parallel(network)

    def epoch_batches(self) -> list[torch.Tensor]:
        batches = super().epoch_batches()
        count = torch.tensor([len(batches)])
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        if len(batches) == 0 and int(count) > 0:
            raise RuntimeError(f"rank {dist.get_rank()} has no training rows in this chunk; "
                               "use fewer ranks or larger chunks")
        while len(batches) < int(count):  # repeat the first batches: every rank steps alike
            batches += batches[: int(count) - len(batches)]
        return batches

    def after_backward(self) -> None:
        # DDP averaged the dense gradients over ranks during backward; the table is ignored
        # by DDP when its gradient is sparse, so it is averaged here.
        if self.sparse_table:
            self._all_reduce_table_gradient()

    def _all_reduce_table_gradient(self) -> None:
        """Average the embedding gradient over ranks as a sparse tensor of touched rows."""
        inputs, size = self.raw.inputs, dist.get_world_size()
        table = inputs.table
        if self.compact:  # RowAdam: the gradient of the rows this batch touched
            rows, leaf = inputs.touched
            local = torch.sparse_coo_tensor(rows[None], leaf.grad, table.shape,
                                            check_invariants=False)
        else:  # SparseAdam: a sparse COO gradient on the table itself
            local = table.grad
        dist.all_reduce(local)
        merged = (local.coalesce() / size).coalesce()
        if self.compact:
            # RowAdam reads (rows, tensor with .grad): hand it every rank's rows.
            inputs.touched = (merged.indices()[0], types.SimpleNamespace(grad=merged.values()))
        else:
            table.grad = merged


class DdpNeuralRanker(NeuralRanker):
    """A registered neural model trained with DistributedDataParallel on this rank's shard."""

    engine = ENGINE

    def __init__(self, network: str, **params):
        super().__init__(network, **params)
        self.workers = dist.get_world_size() if dist.is_initialized() else 1

    def fit(self, data, ctx) -> None:
        rank, size = world()
        self.workers = size
        start, stop = shard_bounds(len(data.train), rank, size)
        self.full_train = data.train
        shard = data.train.slice_rows(start, stop, own_requests=False)
        profile = dataclasses.replace(
            ctx.profile, neural_batch_size=max(1, ctx.profile.neural_batch_size // size))
        super().fit(dataclasses.replace(data, train=shard),
                    dataclasses.replace(ctx, profile=profile))
        self.info.update({"engine": ENGINE, "workers": size, "shard_rows": stop - start,
                          "global_batch_size": profile.neural_batch_size * size})

    def build(self, data, config):
        # Priors of the whole train split, not of this rank's shard: the same network on
        # every rank (DDP broadcasts parameters, but a prior may live outside them).
        return super().build(dataclasses.replace(data, train=self.full_train), config)

    def make_trainer(self, network, config, train, train_rows, batch_size, seed) -> Trainer:
        return DdpTrainer(network, config, train, train_rows, batch_size, seed)

    def chunks_of(self, split):
        """The single-process chunks, re-cut so that every rank has as many (a collective:
        every rank calls it at the same points)."""
        chunks = super().chunks_of(split)
        count = torch.tensor([0 if chunks is None else len(chunks)])
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        if int(count) == 0:
            return None
        edges = np.linspace(0, len(split), int(count) + 1).round().astype(np.int64)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def score_split(self, split, tensors=None) -> dict[str, np.ndarray]:
        """Each rank scores its shard of rows; the shards are gathered in rank order."""
        rank, size = world()
        start, stop = shard_bounds(len(split), rank, size)
        mine = super().score_split(split.slice_rows(start, stop, own_requests=False))
        stacked = torch.from_numpy(np.stack([mine[k] for k in MAIN_TASKS], axis=1))
        rows = [shard_bounds(len(split), r, size) for r in range(size)]
        padded = torch.zeros((max(b - a for a, b in rows), len(MAIN_TASKS)),
                             dtype=stacked.dtype)
        padded[: len(stacked)] = stacked
        parts = [torch.zeros_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded)
        merged = torch.cat([p[: b - a] for p, (a, b) in zip(parts, rows)]).numpy()
        return {key: merged[:, j] for j, key in enumerate(MAIN_TASKS)}


# ---------------------------------------------------------------- the launcher


def parse_run_args(argv: list[str]):
    """`python -m bench run` arguments (the same parser, so the same options)."""
    import argparse

    from bench.commands.options import add_run_arguments

    parser = argparse.ArgumentParser(prog="bench.distributed.ddp_neural")
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench import harness, meta
    from bench.commands.options import parse_overrides, split_settings, with_model_keywords
    from bench.registry import select
    from bench.run_folder import check_resumable, link_latest, prepare_run_dir, resumed_meta
    from bench.tuned_config import default
    from ccp.data.loader import load
    from ccp.profiles import get_profile

    argv = sys.argv[1:] if argv is None else argv
    args = parse_run_args(argv)
    dist.init_process_group("gloo")
    rank, size = world()
    try:
        specs = [dataclasses.replace(s, target="bench.distributed.ddp_neural:DdpNeuralRanker")
                 for s in select(None if args.all else args.models)]
        profile_settings, neural_settings, model_keywords = split_settings(
            parse_overrides(args.set), specs)
        profile = get_profile(args.profile).with_overrides(profile_settings)
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else profile.seeds
        threads = args.threads or max(1, profile.threads // size)
        configs = with_model_keywords(
            {s.key: default(f"engine {ENGINE}: tuned settings are applied to local fits only")
             for s in specs}, specs, model_keywords)
        if any(s.family != "neural" for s in specs):
            raise ValueError("--engine torchrun trains neural models only; "
                             f"got {[s.key for s in specs if s.family != 'neural']}")
        progress = not args.quiet and rank == 0

        def load_data():
            return load(args.dataset, args.data_dir, synth_profile=profile.synth_profile,
                        seed=args.data_seed, min_count=args.min_count,
                        keep_purchase_without_click=args.keep_purchase_without_click,
                        lenient=args.lenient, progress=progress,
                        out_of_core=args.out_of_core != "off")  # shards read from the cache

        if rank == 0:
            data = load_data()  # generates, converts and encodes once
        dist.barrier()
        if rank != 0:
            data = load_data()
        if args.resume and not args.out:
            raise ValueError("--resume needs --out (the run folder to resume)")
        run_dir = None
        if rank == 0:
            run_dir = prepare_run_dir(args.out, f"{data.name}-{profile.name}-ddp{size}",
                                      args.overwrite, args.resume)
            meta_path = run_dir / harness.META_FILE
            previous = (json.loads(meta_path.read_text())
                        if args.resume and meta_path.exists() else None)
            if previous is not None:  # the same checks as `bench run --resume`
                check_resumable(run_dir, previous, data.fingerprint, profile.__dict__,
                                neural_settings, model_keywords)
            run_meta = meta.collect(argv, dataset=data.name, fingerprint=data.fingerprint,
                                    data_info=data.info, vocab_sizes=data.vocab_sizes,
                                    profile=profile.__dict__, seeds=list(seeds),
                                    threads=threads, models=[s.key for s in specs],
                                    engine=ENGINE, workers=size,
                                    neural_settings=neural_settings,
                                    model_keywords=model_keywords,
                                    started_utc=harness.utc_now())
            if previous is not None:
                run_meta = resumed_meta(previous, run_meta)
            (run_dir / harness.META_FILE).write_text(
                json.dumps(run_meta, indent=2, sort_keys=True, default=str))
        # Every rank skips the same finished runs: rank 0's decision is broadcast.
        done = [None]
        if rank == 0 and args.resume:
            done = [sorted((r["model"], r["seed"]) for r in harness.read_records(run_dir)
                           if r.get("error") is None)]
        dist.broadcast_object_list(done, src=0)
        finished = {tuple(key) for key in (done[0] or [])}
        for spec in specs:
            for seed in seeds:
                if (spec.key, seed) in finished:
                    continue
                if progress:
                    print(f"{spec.key} seed {seed} on {size} ranks ...", file=sys.stderr,
                          flush=True)
                records = harness.run_one(spec, data, profile, seed, threads, progress,
                                          neural_settings, engine=ENGINE, workers=size,
                                          config=configs[spec.key])
                if rank == 0:
                    for record in records:
                        harness.append_record(run_dir, record)
                    shown = {r["task"]: round(r["auc"], 4) for r in records
                             if r.get("auc") is not None and r.get("split") == "test"}
                    print(f"    {spec.key}: {shown or records[0].get('error')}",
                          file=sys.stderr, flush=True)
        if rank == 0:
            print(f"results: {run_dir / harness.RESULTS_FILE}")
            if not args.no_report:
                from bench.run_folder import build_report
                build_report(run_dir)
            link_latest(run_dir)  # only folders under reports/runs/
    finally:
        dist.destroy_process_group()
    return 0


def launch(argv: list[str], workers: int, nodes_args: list[str] | None = None) -> int:
    """Run this module under torchrun with `workers` processes on this machine."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run",
               *(nodes_args or ["--standalone"]), f"--nproc_per_node={workers}",
               "-m", "bench.distributed.ddp_neural", *argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
