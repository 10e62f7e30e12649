"""Defaults shared by every neural model, and how a run overrides them.

One dataclass, so that every model in the zoo has the same embedding size, MLP sizes and
optimiser unless its paper says otherwise (a model file then says so where it departs).
Budgets that every family shares (epochs, patience, batch size) live in ccp.profiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ccp.ranges import apply_overrides, check_fields, setting

# Up to this many embedding rows a dense table gradient is cheaper than touched-rows updates.
DENSE_TABLE_MAX_ROWS = 150_000


@dataclass(frozen=True)
class NeuralConfig:
    # Inputs.
    embedding_dim: int = setting(16, low=1)
    # How a multi-valued field's ids are pooled, each id scaled by its weight: "sum" adds the
    # weighted embeddings, "mean" divides that sum by the list length. Chosen by measurement
    # (see neural/README.md): mean keeps hundred-id behaviour lists at the scale of one id.
    pooling: str = setting("mean", choices=("sum", "mean"))
    # User x category / shop / brand cross ids (neural/crosses.py), three more embedded item
    # fields: the match signals the trees get as target-encoded crosses. Default chosen by
    # measurement on validation (neural/README.md, "Cross ids").
    cross_ids: bool = setting(False, choices=(True, False))
    # Network sizes.
    # A bottom, an expert, or a single-task trunk (dims[-1] feeds the towers); each task's
    # head on the shared part (empty: one linear layer).
    mlp_dims: tuple[int, ...] = setting((256, 128), low=1, nonempty=True)
    tower_dims: tuple[int, ...] = setting((64,), low=1)
    n_experts: int = setting(4, low=1)  # MMoE
    n_shared_experts: int = setting(2, low=1)  # PLE, per level
    n_task_experts: int = setting(2, low=1)  # PLE, per task and level
    ple_levels: int = setting(2, low=1)
    dropout: float = setting(0.0, low=0, high=1, high_open=True)
    # Optimiser: Adam on the dense weights. The embedding table learns by "rows" (gradients and
    # a lazy Adam step on the distinct rows a batch touched: neural/optim.py), "sparse" (torch
    # sparse gradients + SparseAdam) or "dense" (full-table gradient + Adam). "auto" picks
    # dense for tables up to DENSE_TABLE_MAX_ROWS rows and rows above: measured (MMoE, 2
    # threads), dense is 5-15% faster at 46k-100k rows, even at 200k, 20% slower at 400k and
    # 3x slower at 1.6M (neural/README.md).
    embedding_gradients: str = setting("auto", choices=("auto", "rows", "sparse", "dense"))
    learning_rate: float = setting(1e-3, low=0, low_open=True)
    embedding_learning_rate: float = setting(1e-3, low=0, low_open=True)
    # L2 penalty (Adam's weight_decay) on the dense weights; the embedding table has none.
    weight_decay: float = setting(0.0, low=0)
    # Batch order: requests in a random order, rows shuffled within windows of this many
    # batches (0 = a full shuffle of all rows). Smaller windows put fewer distinct requests in
    # a batch (each request's behaviour lists are pooled once per batch: faster). 32 had the
    # best mean validation AUC over three seeds against 0 and 8 (neural/README.md).
    shuffle_window: int = setting(32, low=0, note="0 = a full shuffle")
    # How a multi-task loss's terms are combined (neural/balancing.py): their plain sum, fixed
    # weights (`loss_weights`), learned uncertainty weights (Kendall et al. 2018), GradNorm's
    # learned weights (Chen et al. 2018) or PCGrad's projected gradients (Yu et al. 2020).
    # Single-task models refuse anything but "none".
    loss_balancing: str = setting("none", choices=("none", "fixed", "uncertainty", "gradnorm",
                                                   "pcgrad"))
    # loss_balancing=fixed: each named loss term's weight, e.g. "ctr:0.3,cvr:1"; a term not
    # named weighs 1 (the names are the model's loss terms: ctr, cvr or ctcvr, ...).
    loss_weights: str = setting("", note="name:weight pairs, each weight > 0; "
                                "a term not named weighs 1")
    # loss_balancing=gradnorm: the asymmetry alpha, how strongly a task that trains more slowly
    # is pulled up (0: equal gradient norms). 1.5: the paper's value for NYUv2.
    gradnorm_alpha: float = setting(1.5, low=0, high=10)
    # Prediction batch size (no gradients, so larger than the training batch).
    predict_batch_size: int = setting(16384, low=1)

    def __post_init__(self):
        check_fields(self)
        parse_loss_weights(self.loss_weights)

    @classmethod
    def with_overrides(cls, overrides: dict | None) -> NeuralConfig:
        """Defaults with `overrides` applied (text as --set gives it, or values), each converted
        to its field's type and checked against its declared range."""
        config = cls()
        if not overrides:
            return config
        return replace(config, **apply_overrides(config, overrides, "neural setting"))

    def gradients_for(self, table_rows: int) -> str:
        """The embedding update actually used for a table of `table_rows` rows."""
        if self.embedding_gradients != "auto":
            return self.embedding_gradients
        return "dense" if table_rows <= DENSE_TABLE_MAX_ROWS else "rows"



def parse_loss_weights(text: str) -> dict[str, float]:
    """"ctr:0.3,cvr:1" -> {"ctr": 0.3, "cvr": 1.0}; a bad pair or weight names the setting."""
    weights: dict[str, float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = (part.strip() for part in pair.partition(":"))
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not name or name in weights or not 0 < weight < math.inf:
            raise ValueError(f"setting loss_weights={text} is out of range: allowed "
                             "name:weight pairs, each name once, each weight a number > 0")
        weights[name] = weight
    return weights
