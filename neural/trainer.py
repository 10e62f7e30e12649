"""The one trainer every neural model shares, and the adapter to the bench model protocol.

`NeuralRanker(network="neural.models.mmoe:MMoE", **params)` is what the registry builds. It
owns everything a model file must not: column tensors, batch order, optimisers, early stopping
on validation, seeding, threads, progress, and prediction.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import sys

import numpy as np
import torch

from ccp.tasks import MAIN_TASKS, TASKS, priors_of
from ccp.timing import Stopwatch
from neural import balancing
from neural.config import NeuralConfig
from neural.crosses import CrossIds
from neural.inputs import FieldLayout, TensorSplit
from neural.network import RankingNet
from neural.optim import RowAdam
from neural.stopping import BestCheckpoint, CheckPlan, FitLog
from neural.validation import ValidationChecks, predict_tensors


def resolve(target: str) -> type[RankingNet]:
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def layout_for(data, config: NeuralConfig) -> FieldLayout:
    """The embedding table's layout: the data's fields, and the cross ids when configured
    (pairs rare in train go to the rare code under the data's own min_count)."""
    crosses = None
    if config.cross_ids:
        from ccp.data.encode import PrepSettings

        settings = data.info.get("settings") or {}
        crosses = CrossIds.fit(data.train, settings.get("min_count", PrepSettings.min_count))
    return FieldLayout.from_vocab_sizes(data.vocab_sizes, crosses)


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
        balancing.after_step(self.network)
        return loss.detach()

    def after_backward(self) -> None:
        """Between the gradients and the optimiser step (the DDP trainer all-reduces here)."""

    def run_steps(self, stream, n_steps: int, label: str, progress: bool) -> tuple:
        """Up to `n_steps` steps on batches from `stream` (NeuralRanker.batch_stream): (mean
        training loss, rows, steps taken, epoch of the last batch)."""
        from tqdm.auto import tqdm

        self.network.train()
        total, seen, steps, last_epoch = 0.0, 0, 0, 0
        with tqdm(total=n_steps, desc=f"    {label}", disable=not progress, leave=False,
                  file=sys.stderr, mininterval=1.0) as bar:
            for epoch, rows in itertools.islice(stream, n_steps):
                last_epoch = epoch
                total += float(self.step(rows)) * len(rows)
                seen += len(rows)
                steps += 1
                bar.update(1)
                if steps % 50 == 0:
                    bar.set_postfix(loss=f"{total / max(seen, 1):.5f}", refresh=False)
        if not np.isfinite(total):
            raise FloatingPointError(f"training loss became {total} ({label})")
        return total / max(seen, 1), seen, steps, last_epoch


def agreed_max(value: int) -> int:
    """The largest `value` over the processes of a distributed fit; `value` in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tensor = torch.tensor([value])
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return int(tensor)
    return value


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


# The inputs table's "match" column, with and without the cross ids (NeuralConfig.cross_ids).
MATCH = {True: "combination ids 508/509/702/853 embedded, and their weights; user x "
               "category/shop/brand cross ids, hashed and embedded (pairs seen < min_count "
               "times in train share the rare code)",
         False: "combination ids 508/509/702/853 embedded, and their weights; no explicit "
                "user x category/shop/brand cross ids (the MLP combines the user's and the "
                "item's embeddings)"}


class NeuralRanker:
    """A network of the zoo behind the bench model protocol (fit / predict / n_params)."""

    # What every network sees (neural/inputs.py), in the columns of the report's inputs table.
    INPUTS = {
        "ids": "all 18 single-valued fields (user 101, profile 121-129, item 205, "
               "category 206, shop 207, brand 216, combinations, position 301), each embedded",
        "lists": "every id of the four user lists and the item's intention nodes, "
                 "embedded and pooled with their weights (lists kept whole)",
        "match": MATCH[NeuralConfig.cross_ids],
        "dense": "the 12 dense columns (combination weights, list mean weights and lengths)",
    }

    @staticmethod
    def keywords_of(params: dict) -> dict:
        """The network's own keywords (ccp.model.ModelSpec.keywords): what --set may give it."""
        from ccp.model import optional_keywords

        return optional_keywords(resolve(params["network"]), skip=("layout", "config", "priors"))

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
        self.layout = layout_for(data, config)
        self.config = config
        # What this fit's records say it saw (INPUTS above: with the default cross_ids).
        self.INPUTS = {**type(self).INPUTS, "match": MATCH[config.cross_ids]}
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
        from ccp.data.chunks import chunk_bounds, chunk_rows_for

        rows = chunk_rows_for(split, self.chunk_rows)
        return chunk_bounds(len(split), rows) if rows else None

    def make_trainer(self, network, config, train, train_rows, batch_size, seed) -> Trainer:
        return Trainer(network, config, train, train_rows, batch_size, seed)

    def batch_stream(self, trainer: Trainer, split):
        """(epoch, rows) of every step, epoch after epoch, for as long as the fit asks: the
        whole split, or its chunks in a random order with rows shuffled within each chunk (the
        trainer's tensors then follow the chunk). Ends if an epoch has no batch."""
        epoch = 0
        while True:
            epoch += 1
            chunks, stepped = self.chunks_of(split), False
            if chunks is None:
                for rows in trainer.epoch_batches():
                    stepped = True
                    yield epoch, rows
            else:
                for c in torch.randperm(len(chunks), generator=trainer.generator).tolist():
                    part = split.slice_rows(*chunks[c])
                    trainer.train = TensorSplit(part, self.layout, self.config.pooling)
                    trainer.train_rows = self.training_rows(part)
                    for rows in trainer.epoch_batches():
                        stepped = True
                        yield epoch, rows
            if not stepped:
                return

    def epoch_steps(self, split, batch_size: int) -> int:
        """Optimizer steps of one epoch over all rows of `split` (the budget's unit), the
        largest over the processes of a distributed fit so that every rank checks alike."""
        chunks = self.chunks_of(split) or [(0, len(split))]
        steps = sum(-(-(stop - start) // batch_size) for start, stop in chunks)
        return agreed_max(max(steps, 1))

    def own_rows(self, split) -> int:
        """Rows one epoch trains on: all, or the clicked ones (TRAIN_ROWS)."""
        return len(split) if self.network.TRAIN_ROWS == "all" else int(split.click.sum())

    def score_split(self, split, tensors=None) -> dict[str, np.ndarray]:
        """Outputs for every row of `split`, chunk by chunk when it is out of core; `tensors`:
        the split's `TensorSplit` or batches prepared from it, when the caller has them."""
        size, chunks = self.config.predict_batch_size, self.chunks_of(split)
        if tensors is None and chunks is None:
            tensors = TensorSplit(split, self.layout, self.config.pooling)
        if tensors is not None:
            return predict_tensors(self.network, tensors, size)
        parts = [predict_tensors(self.network, TensorSplit(split.slice_rows(start, stop),
                                                           self.layout, self.config.pooling),
                                 size) for start, stop in chunks]
        return {key: np.concatenate([p[key] for p in parts]) for key in MAIN_TASKS}

    def train_output_means(self, split, tensors: TensorSplit | None) -> dict[str, float]:
        """Each output's mean on `split` over its task's rows (CVR: clicked rows), summed over
        every process's rows when this is one rank of a distributed fit."""
        # This process's rows only (a distributed ranker's score_split gathers other rows).
        outputs = NeuralRanker.score_split(self, split, tensors)
        rows = [TASKS[task].rows(split.click) for task in MAIN_TASKS]
        totals = torch.tensor([outputs[task][r].sum() for task, r in zip(MAIN_TASKS, rows)]
                              + [r.sum() for r in rows], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        return {task: float(totals[i] / max(float(totals[i + len(MAIN_TASKS)]), 1.0))
                for i, task in enumerate(MAIN_TASKS)}

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
        trainer = self.make_trainer(network, config, train,
                                    self.training_rows(data.train) if in_memory else None,
                                    profile.neural_batch_size, ctx.seed)
        batch = trainer.batch_size
        plan = CheckPlan.from_profile(profile, self.epoch_steps(data.train, batch),
                                      agreed_max(-(-self.own_rows(data.train) // batch)), batch)
        log = self.train_with_checks(trainer, data, plan, ctx.progress,
                                      ctx.on_validation)
        log.best.restore(network)
        if network.CALIBRATE_ON_TRAIN:
            network.calibrate(self.train_output_means(data.train, train))
        self.info = {
            "network": self.network_cls.__name__,
            **{f"param_{k}": v for k, v in self.params.items() if k != "network"},
            "loss": getattr(network, "loss_how", ""), **balancing.describe(network),
            "train_rows": network.TRAIN_ROWS,
            "n_train_rows": log.own_rows, "train_chunks": len(self.chunks_of(data.train) or [0]),
            **log.as_info(plan), "early_stop_tasks": ",".join(network.STOP_TASKS),
            # On a shared machine wall time varies with the load; process CPU time per thread
            # estimates what the run reaches with its cores to itself.
            "train_cpu_samples_per_s": log.rows_seen / max(log.loop_cpu_s / ctx.threads, 1e-9),
            "loadavg_end": os.getloadavg()[0],
            "embedding_dim": config.embedding_dim, "mlp_dims": str(config.mlp_dims),
            "tower_dims": str(config.tower_dims), "pooling": config.pooling,
            "cross_ids": config.cross_ids, "cross_buckets": ",".join(
                str(b) for b in (self.layout.crosses.buckets.values()
                                 if self.layout.crosses else ())),
            "embedding_gradients": network.inputs.gradients, "batch_size": trainer.batch_size,
            "shuffle_window": config.shuffle_window, "threads": ctx.threads,
        }

    def train_with_checks(self, trainer: Trainer, data, plan: CheckPlan, progress: bool,
                          on_validation=None):
        """Steps in blocks of `plan.check_every`, each followed by a validation check on the
        mean validation AUC of the network's STOP_TASKS; stops by patience or at the cap.
        on_validation(check, score): told every check (tuning's pruner may end the fit)."""
        network = self.network
        log = FitLog(BestCheckpoint(plan.patience), own_rows=self.own_rows(data.train))
        checks = ValidationChecks(self, data.valid, network.STOP_TASKS, plan.check_unclicked)
        log.check_rows = len(checks.split)
        stream = self.batch_stream(trainer, data.train)
        for check in range(1, plan.max_checks + 1):
            with Stopwatch() as watch:
                loss, rows, steps, epoch = trainer.run_steps(
                    stream, plan.steps_before(check), f"check {check}/{plan.max_checks}",
                    progress)
            log.add_steps(steps, rows, watch.wall_s, watch.cpu_s)
            if steps == 0:  # no training row at all: keep the initial weights
                log.stopped_by = "no training rows"
                break
            with Stopwatch() as watch:
                aucs = checks.aucs()
            log.check_s += watch.wall_s
            finite = [v for v in aucs.values() if np.isfinite(v)]
            score = float(np.mean(finite)) if finite else -loss
            log.history.append({"check": check, "step": log.steps, "epoch": epoch,
                                "epochs_seen": round(log.rows_seen / max(log.own_rows, 1), 4),
                                "train_loss": round(loss, 6),
                                **{f"valid_auc_{k}": round(v, 6) for k, v in aucs.items()}})
            if progress:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in aucs.items())
                print(f"    check {check} (step {log.steps}, epoch {epoch}): loss {loss:.5f}  "
                      f"valid AUC {shown}", file=sys.stderr, flush=True)
            if on_validation is not None:
                on_validation(check, score)
            if log.best.update(check, score, network):
                log.stopped_by = "patience"
                break
        return log

    def predict(self, split) -> dict[str, np.ndarray]:
        if self.network is None:
            raise RuntimeError("predict() before fit()")
        torch.set_num_threads(self.threads)
        with deterministic_algorithms():
            return self.score_split(split)
