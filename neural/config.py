"""Defaults shared by every neural model, and how a run overrides them.

One dataclass, so that every model in the zoo has the same embedding size, MLP sizes and
optimiser unless its paper says otherwise (a model file then says so where it departs).
Budgets that every family shares (epochs, patience, batch size) live in bench.profiles.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# Up to this many embedding rows a dense table gradient is cheaper than touched-rows updates.
DENSE_TABLE_MAX_ROWS = 150_000


@dataclass(frozen=True)
class NeuralConfig:
    # Inputs.
    embedding_dim: int = 16
    # How a multi-valued field's ids are pooled, each id scaled by its weight: "sum" adds the
    # weighted embeddings, "mean" divides that sum by the list length. Chosen by measurement
    # (see neural/README.md): mean keeps hundred-id behaviour lists at the scale of one id.
    pooling: str = "mean"
    # Network sizes.
    mlp_dims: tuple[int, ...] = (256, 128)  # a bottom, an expert, or a single-task trunk
    tower_dims: tuple[int, ...] = (64,)  # each task's head on top of the shared part
    n_experts: int = 4  # MMoE
    n_shared_experts: int = 2  # PLE, per level
    n_task_experts: int = 2  # PLE, per task and level
    ple_levels: int = 2
    dropout: float = 0.0
    # Optimiser: Adam on the dense weights. The embedding table learns by "rows" (gradients and
    # a lazy Adam step on the distinct rows a batch touched: neural/optim.py), "sparse" (torch
    # sparse gradients + SparseAdam) or "dense" (full-table gradient + Adam). "auto" picks
    # dense for tables up to DENSE_TABLE_MAX_ROWS rows and rows above: measured (MMoE, 2
    # threads), dense is 5-15% faster at 46k-100k rows, even at 200k, 20% slower at 400k and
    # 3x slower at 1.6M (neural/README.md).
    embedding_gradients: str = "auto"
    learning_rate: float = 1e-3
    embedding_learning_rate: float = 1e-3
    # L2 penalty (Adam's weight_decay) on the dense weights; the embedding table has none.
    weight_decay: float = 0.0
    # Batch order: requests in a random order, rows shuffled within windows of this many
    # batches (0 = a full shuffle of all rows). Smaller windows put fewer distinct requests in
    # a batch (each request's behaviour lists are pooled once per batch: faster). 32 had the
    # best mean validation AUC over three seeds against 0 and 8 (neural/README.md).
    shuffle_window: int = 32
    # Prediction batch size (no gradients, so larger than the training batch).
    predict_batch_size: int = 16384

    @classmethod
    def with_overrides(cls, overrides: dict | None) -> NeuralConfig:
        """Defaults with `overrides` applied; unknown keys are an error that lists the known."""
        config = cls()
        if not overrides:
            return config
        known = {f.name: f for f in fields(cls)}
        unknown = set(overrides) - set(known)
        if unknown:
            raise ValueError(f"unknown neural setting(s) {sorted(unknown)}; known: "
                             f"{sorted(known)}")
        typed = {}
        for key, value in overrides.items():
            default = getattr(config, key)
            if isinstance(default, tuple):
                typed[key] = tuple(int(v) for v in value) if not isinstance(value, str) \
                    else tuple(int(v) for v in value.split(",") if v)
            elif isinstance(default, bool) and isinstance(value, str):
                typed[key] = value.lower() in ("1", "true", "yes")
            else:
                typed[key] = type(default)(value)
        config = replace(config, **typed)
        if config.embedding_gradients not in ("auto", "rows", "sparse", "dense"):
            raise ValueError("embedding_gradients must be 'auto', 'rows', 'sparse' or 'dense', got "
                             f"{config.embedding_gradients!r}")
        if config.pooling not in ("sum", "mean"):
            raise ValueError(f"pooling must be 'sum' or 'mean', got {config.pooling!r}")
        return config

    def gradients_for(self, table_rows: int) -> str:
        """The embedding update actually used for a table of `table_rows` rows."""
        if self.embedding_gradients != "auto":
            return self.embedding_gradients
        return "dense" if table_rows <= DENSE_TABLE_MAX_ROWS else "rows"
