"""The one trainer every neural model shares, and the adapter to the bench model protocol.

`NeuralRanker(network="neural.models.mmoe:MMoE", **params)` is what the registry builds. It
owns everything a model file must not: column tensors, batch order, optimisers, early stopping
on validation, seeding, threads, progress, and prediction.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time

import numpy as np
import torch

from bench.metrics import auc
from neural import balancing
from neural.config import NeuralConfig
from neural.inputs import FieldLayout, TensorSplit
from neural.network import RankingNet
from neural.optim import RowAdam

OUTPUT_KEYS = ("ctr", "cvr", "ctcvr")


def resolve(target: str) -> type[RankingNet]:
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def priors_of(train) -> dict[str, float]:
    n = max(len(train), 1)
    clicks = float(train.click.sum())
    conversions = float((train.click & train.purchase).sum())
    return {"ctr": clicks / n, "cvr": conversions / max(clicks, 1.0), "ctcvr": conversions / n}


def epoch_order(request: torch.Tensor, window: int, generator: torch.Generator) -> torch.Tensor:
    """Positions 0..n-1 in training order for one epoch.

    Requests are visited in a random order with their impressions together, then positions
    are shuffled within windows of `window` rows: a batch holds rows of few requests (their
    user lists are pooled once per request) yet is not one request's rows. window <= 0 is a
    full shuffle.
    """
    n = len(request)
    if window <= 0 or n == 0:
        return torch.randperm(n, generator=generator)
    n_requests = int(request.max()) + 1
    request_rank = torch.randperm(n_requests, generator=generator)
    grouped = torch.argsort(request_rank[request], stable=True)
    window_id = torch.arange(n, dtype=torch.float64) // window
    jitter = torch.rand(n, generator=generator, dtype=torch.float64)
    return grouped[torch.argsort(window_id + jitter)]


def make_optimizers(network: RankingNet, config: NeuralConfig) -> list:
    """Adam for the dense weights; the table's follows how the embedding layer learns."""
    table = network.inputs.table
    dense = [p for p in network.parameters() if p is not table]
    adam = {"lr": config.learning_rate, "fused": True}  # fused: one kernel for all tensors
    decay = {"weight_decay": config.weight_decay}  # dense weights only, never the table
    gradients = network.inputs.gradients
    if gradients == "rows":
        return [RowAdam(network.inputs, lr=config.embedding_learning_rate),
                torch.optim.Adam(dense, **adam, **decay)]
    if gradients == "sparse":
        return [torch.optim.SparseAdam([table], lr=config.embedding_learning_rate),
                torch.optim.Adam(dense, **adam, **decay)]
    return [torch.optim.Adam([{"params": [table], "lr": config.embedding_learning_rate},
                              {"params": dense, **decay}], **adam)]


@torch.no_grad()
def predict_tensors(network: RankingNet, data: TensorSplit, batch_size: int,
                    rows: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Outputs for `rows` (default all) in order; batches of consecutive rows."""
    network.eval()
    rows = torch.arange(len(data)) if rows is None else rows
    parts = {key: [] for key in OUTPUT_KEYS}
    for start in range(0, len(rows), batch_size):
        out = network(data.batch(rows[start:start + batch_size]))
        for key in OUTPUT_KEYS:
            parts[key].append(out[key].float())
    return {key: (torch.cat(v).numpy().astype(np.float64) if v else np.zeros(0))
            for key, v in parts.items()}


def validation_aucs(outputs: dict[str, np.ndarray], split, tasks) -> dict[str, float]:
    """AUC per task on the rows bench.metrics defines (CVR on clicked rows)."""
    click = split.click.astype(bool)
    labels = {"ctr": (split.click, slice(None)), "cvr": (split.purchase, click),
              "ctcvr": (split.click & split.purchase, slice(None))}
    result = {}
    for task in tasks:
        label, rows = labels[task]
        result[task] = auc(label[rows], outputs[task][rows])
    return result


class Trainer:
    """Fits one network on one `TensorSplit`: batch order, steps, optimisers."""

    def __init__(self, network: RankingNet, config: NeuralConfig, train: TensorSplit,
                 train_rows: torch.Tensor, batch_size: int, seed: int):
        self.network, self.config, self.train = network, config, train
        self.train_rows, self.batch_size = train_rows, batch_size
        self.optimizers = make_optimizers(network, config)
        self.generator = torch.Generator().manual_seed(seed)
        # "rows" gradients need batches renumbered into their distinct table rows.
        self.compact = network.inputs.gradients == "rows"

    def epoch_batches(self) -> list[torch.Tensor]:
        """This epoch's batches as row tensors (the order is drawn once per epoch)."""
        window = self.config.shuffle_window * self.batch_size
        order = self.train_rows[epoch_order(self.train.request[self.train_rows], window,
                                            self.generator)]
        return list(order.split(self.batch_size))

    def step(self, rows: torch.Tensor) -> torch.Tensor:
        """One optimisation step on the impressions `rows`; returns the (detached) loss."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        batch = self.train.batch(rows)
        if self.compact:
            batch = batch.compact()
        loss = balancing.backward(self.network, self.network(batch), batch)
        self.after_backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss.detach()

    def after_backward(self) -> None:
        """Between the gradients and the optimiser step (the DDP trainer all-reduces here)."""

    def epoch(self, label: str, progress: bool) -> float:
        """One pass over the training rows; the mean training loss."""
        from tqdm.auto import tqdm

        self.network.train()
        batches = self.epoch_batches()
        total, seen = 0.0, 0
        with tqdm(total=len(batches), desc=f"    {label}", disable=not progress, leave=False,
                  file=sys.stderr, mininterval=1.0) as bar:
            for b, rows in enumerate(batches):
                total += float(self.step(rows)) * len(rows)
                seen += len(rows)
                bar.update(1)
                if b % 50 == 0:
                    bar.set_postfix(loss=f"{total / max(seen, 1):.5f}", refresh=False)
        if not np.isfinite(total):
            raise FloatingPointError(f"training loss became {total} ({label})")
        return total / max(seen, 1)


@contextlib.contextmanager
def deterministic_algorithms():
    """Deterministic kernels inside the block; the caller's setting is restored after it (a
    library must not leave a process-wide switch set)."""
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn_only)


def setup_torch(threads: int, seed: int) -> None:
    """Threads pinned, seeds set, deterministic kernels: same seed -> same predictions."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


class NeuralRanker:
    """A network of the zoo behind the bench model protocol (fit / predict / n_params)."""

    # What every network sees (neural/inputs.py), in the columns of the report's inputs table.
    INPUTS = {
        "ids": "all 18 single-valued fields (user 101, profile 121-129, item 205, "
                             "category 206, shop 207, brand 216, combinations, position 301), "
                             "each embedded",
        "lists": "every id of the four user lists and the item's intention nodes, "
                           "embedded and pooled with their weights (lists kept whole)",
        "match": "combination ids 508/509/702/853 embedded, and their weights; "
                                  "no explicit user x category/shop/brand cross ids (the MLP "
                                  "combines the user's and the item's embeddings)",
        "dense": "the 12 dense columns (combination weights, list mean weights and lengths)",
    }

    def __init__(self, network: str, **params):
        self.network_cls = resolve(network)
        self.params = params
        self.OUTPUTS_HOW = dict(self.network_cls.OUTPUTS_HOW)
        self.CONSTANT_OUTPUTS = tuple(self.network_cls.CONSTANT_OUTPUTS)
        self.network: RankingNet | None = None
        self.config: NeuralConfig | None = None
        self.layout: FieldLayout | None = None
        self.threads = 1
        self.chunk_rows = 0  # the profile's neural_chunk_rows, set by fit
        self.info: dict = {}

    def n_params(self) -> int | None:
        if self.network is None:
            return None
        return sum(p.numel() for p in self.network.parameters())

    def build(self, data, config: NeuralConfig) -> RankingNet:
        self.layout = FieldLayout.from_vocab_sizes(data.vocab_sizes)
        self.config = config
        self.network = self.network_cls(self.layout, config, priors_of(data.train),
                                        **self.params)
        return self.network

    def training_rows(self, train) -> torch.Tensor:
        rule = self.network.TRAIN_ROWS
        if rule == "all":
            return torch.arange(len(train))
        if rule == "clicked":
            return torch.from_numpy(np.flatnonzero(train.click == 1))
        raise ValueError(f"unknown TRAIN_ROWS {rule!r}")

    # ---- out of core: a split too large for memory is trained and scored in chunks ----

    def chunks_of(self, split) -> list[tuple[int, int]] | None:
        """Row ranges to process one at a time, or None for the whole split in memory."""
        from bench.data.chunks import chunk_bounds, chunk_rows_for

        rows = chunk_rows_for(split, self.chunk_rows)
        return chunk_bounds(len(split), rows) if rows else None

    def make_trainer(self, network, config, train, train_rows, batch_size, seed) -> Trainer:
        return Trainer(network, config, train, train_rows, batch_size, seed)

    def train_epoch(self, trainer: Trainer, split, label: str, progress: bool) -> tuple:
        """(mean loss, rows) of one epoch: the whole split, or its chunks in a random order
        with rows shuffled within each chunk."""
        chunks = self.chunks_of(split)
        if chunks is None:
            return trainer.epoch(label, progress), len(trainer.train_rows)
        total, seen = 0.0, 0
        for k, c in enumerate(torch.randperm(len(chunks), generator=trainer.generator).tolist()):
            part = split.slice_rows(*chunks[c])
            trainer.train = TensorSplit(part, self.layout, self.config.pooling)
            trainer.train_rows = self.training_rows(part)
            total += trainer.epoch(f"{label} chunk {k + 1}/{len(chunks)}", progress) * len(
                trainer.train_rows)
            seen += len(trainer.train_rows)
        trainer.train = None  # the last chunk is not kept between epochs
        return total / max(seen, 1), seen

    def score_split(self, split, tensors: TensorSplit | None = None) -> dict[str, np.ndarray]:
        """Outputs for every row of `split`, chunk by chunk when it is out of core."""
        size, chunks = self.config.predict_batch_size, self.chunks_of(split)
        if tensors is None and chunks is None:
            tensors = TensorSplit(split, self.layout, self.config.pooling)
        if tensors is not None:
            return predict_tensors(self.network, tensors, size)
        parts = [predict_tensors(self.network, TensorSplit(split.slice_rows(start, stop),
                                                           self.layout, self.config.pooling),
                                 size) for start, stop in chunks]
        return {key: np.concatenate([p[key] for p in parts]) for key in OUTPUT_KEYS}

    def train_output_means(self, split, tensors: TensorSplit | None) -> dict[str, float]:
        """Each output's mean on `split` over its task's rows (CVR: clicked rows), summed over
        every process's rows when this is one rank of a distributed fit."""
        # This process's rows only (a distributed ranker's score_split gathers other rows).
        outputs = NeuralRanker.score_split(self, split, tensors)
        clicked = split.click == 1
        totals = torch.tensor([outputs["ctr"].sum(), outputs["cvr"][clicked].sum(),
                               outputs["ctcvr"].sum(), len(split), clicked.sum(), len(split)],
                              dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        return {task: float(totals[i] / max(float(totals[i + 3]), 1.0))
                for i, task in enumerate(OUTPUT_KEYS)}

    def fit(self, data, ctx) -> None:
        with deterministic_algorithms():
            self.fit_network(data, ctx)

    def fit_network(self, data, ctx) -> None:
        config = NeuralConfig.with_overrides(ctx.extra)
        profile = ctx.profile
        self.threads = ctx.threads
        self.chunk_rows = getattr(profile, "neural_chunk_rows", 0)
        setup_torch(ctx.threads, ctx.seed)
        network = self.build(data, config)
        in_memory = self.chunks_of(data.train) is None
        train = TensorSplit(data.train, self.layout, config.pooling) if in_memory else None
        valid = (TensorSplit(data.valid, self.layout, config.pooling)
                 if self.chunks_of(data.valid) is None else None)
        trainer = self.make_trainer(network, config, train,
                                    self.training_rows(data.train) if in_memory else None,
                                    profile.neural_batch_size, ctx.seed)

        best_score, best_state, best_epoch, bad_epochs = -np.inf, None, 0, 0
        history, loop_s, loop_cpu_s, rows_seen = [], 0.0, 0.0, 0
        for epoch in range(1, profile.neural_max_epochs + 1):
            started, cpu_started = time.perf_counter(), time.process_time()
            train_loss, epoch_rows = self.train_epoch(trainer, data.train, f"epoch {epoch}",
                                                      ctx.progress)
            loop_s += time.perf_counter() - started
            loop_cpu_s += time.process_time() - cpu_started
            rows_seen += epoch_rows
            outputs = self.score_split(data.valid, valid)
            aucs = validation_aucs(outputs, data.valid, network.STOP_TASKS)
            finite = [v for v in aucs.values() if np.isfinite(v)]
            # Early stopping on the mean validation AUC of the network's STOP_TASKS.
            score = float(np.mean(finite)) if finite else -train_loss
            history.append({"epoch": epoch, "train_loss": round(train_loss, 6),
                            **{f"valid_auc_{k}": round(v, 6) for k, v in aucs.items()}})
            if ctx.progress:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in aucs.items())
                print(f"    epoch {epoch}: loss {train_loss:.5f}  valid AUC {shown}  "
                      f"({epoch_rows / (time.perf_counter() - started):,.0f} "
                      "rows/s incl. validation)", file=sys.stderr, flush=True)
            if ctx.on_validation is not None:  # tuning's pruner may end the fit here
                ctx.on_validation(epoch, score)
            if score > best_score:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                bad_epochs += 1
                if bad_epochs >= profile.neural_patience:
                    break
        if best_state is not None:
            network.load_state_dict(best_state)
        if network.CALIBRATE_ON_TRAIN:
            network.calibrate(self.train_output_means(data.train, train))
        self.info = {
            "network": self.network_cls.__name__,
            **{f"param_{k}": v for k, v in self.params.items() if k != "network"},
            "loss": getattr(network, "loss_how", ""), "train_rows": network.TRAIN_ROWS,
            "n_train_rows": epoch_rows, "train_chunks": len(self.chunks_of(data.train) or [0]),
            "epochs_run": len(history), "best_epoch": best_epoch,
            "best_valid_score": best_score, "early_stop_tasks": ",".join(network.STOP_TASKS),
            "train_loop_s": loop_s, "train_samples_per_s": rows_seen / max(loop_s, 1e-9),
            # On a shared machine wall time varies with the load; process CPU time per thread
            # estimates what the run reaches with its cores to itself.
            "train_loop_cpu_s": loop_cpu_s,
            "train_cpu_samples_per_s": rows_seen / max(loop_cpu_s / ctx.threads, 1e-9),
            "loadavg_end": os.getloadavg()[0],
            "embedding_dim": config.embedding_dim, "mlp_dims": str(config.mlp_dims),
            "tower_dims": str(config.tower_dims), "pooling": config.pooling,
            "embedding_gradients": network.inputs.gradients, "batch_size": trainer.batch_size,
            "shuffle_window": config.shuffle_window, "threads": ctx.threads,
            "history": json.dumps(history),
        }

    def predict(self, split) -> dict[str, np.ndarray]:
        if self.network is None:
            raise RuntimeError("predict() before fit()")
        torch.set_num_threads(self.threads)
        with deterministic_algorithms():
            return self.score_split(split)
