"""Adam on the embedding rows a batch touched: sparse updates without sparse tensors.

torch's SparseAdam coalesces a sparse COO gradient (a sort of every looked-up id) and then
builds several more sparse tensors per step. Here the batch is compacted once (its distinct
table rows found with one `unique`), the lookups read a small (rows, d) leaf tensor whose
gradient is already one row per distinct id, and the update is an index_select / index_copy
of those rows. The arithmetic is SparseAdam's ("lazy" Adam: moments of untouched rows wait,
bias correction uses the global step).
"""

from __future__ import annotations

import torch

from neural.inputs import FeatureEmbedding


class RowAdam:
    def __init__(self, embedding: FeatureEmbedding, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.embedding = embedding
        self.lr, self.betas, self.eps = lr, betas, eps
        table = embedding.table
        self.exp_avg = torch.zeros_like(table, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(table, requires_grad=False)
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: each batch gathers its rows into a fresh leaf tensor."""

    @torch.no_grad()
    def step(self) -> None:
        if self.embedding.touched is None:
            return
        rows, leaf = self.embedding.touched
        self.embedding.touched = None  # consumed: a second step without a batch does nothing
        grad = leaf.grad
        if grad is None:
            return
        self.steps += 1
        beta1, beta2 = self.betas
        exp_avg = self.exp_avg.index_select(0, rows).mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = self.exp_avg_sq.index_select(0, rows).mul_(beta2)
        exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
        self.exp_avg.index_copy_(0, rows, exp_avg)
        self.exp_avg_sq.index_copy_(0, rows, exp_avg_sq)
        correction1 = 1 - beta1 ** self.steps
        correction2 = 1 - beta2 ** self.steps
        denom = exp_avg_sq.div_(correction2).sqrt_().add_(self.eps)
        # rows are distinct, so index_add_ is a plain per-row update.
        self.embedding.table.index_add_(0, rows, exp_avg.div_(denom),
                                        alpha=-self.lr / correction1)
