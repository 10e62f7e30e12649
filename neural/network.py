"""What every model network shares: the input layer, the output contract and loss helpers.

A network maps a `Batch` to a dict of task outputs and defines the loss of its paper; it holds
no training loop (neural/trainer.py owns fitting, early stopping and prediction).

Outputs are probabilities under "ctr", "cvr", "ctcvr"; a probability that is the sigmoid of
one logit also comes as "<task>_logit" so its loss is computed stably from the logit, and the
loss on a product pCTR x pCVR is computed from the two logits (`product_bce`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ccp.tasks import MAIN_TASKS
from neural.balancing import sum_terms
from neural.config import NeuralConfig
from neural.inputs import Batch, FeatureEmbedding, FieldLayout
from neural.layers import Tower

LN2 = math.log(2.0)


class RankingNet(nn.Module):
    OUTPUTS_HOW: dict[str, str] = {}
    # Training rows: "all" impressions, or "clicked" only (the trainer filters them).
    TRAIN_ROWS = "all"
    # Outputs that are a constant train prior (single-task models), not an estimate.
    CONSTANT_OUTPUTS: tuple[str, ...] = ()
    # Validation AUCs whose mean picks the best epoch (neural/README.md, "Early stopping").
    STOP_TASKS: tuple[str, ...] = MAIN_TASKS
    # Whether the trainer scores the train split after fitting and hands each output's mean
    # (over its task's rows) to `calibrate` (one extra forward pass over train).
    CALIBRATE_ON_TRAIN = False
    # How many named terms `loss_terms` returns (a multi-task loss has one per task; loss
    # balancing, neural/balancing.py, needs at least two).
    N_LOSS_TERMS = 1

    def __init__(self, layout: FieldLayout, config: NeuralConfig, priors: dict[str, float],
                 loss_balancing: str | None = None):
        super().__init__()
        from neural.balancing import make_balancer

        self.config = config
        # A model's own balancer (a registered variant's) or the run's `loss_balancing`.
        self.balancer = make_balancer(type(self), config, loss_balancing)
        self.inputs = FeatureEmbedding(layout, config.embedding_dim,
                                       config.gradients_for(layout.n_rows))
        # Train-set rates of each task: the output of a single-task model for tasks it lacks.
        self.register_buffer("prior", torch.tensor([priors[task] for task in MAIN_TASKS],
                                                   dtype=torch.float32))

    @property
    def in_dim(self) -> int:
        return self.inputs.out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.score(self.inputs(batch))

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Task outputs from the flat input (B, in_dim)."""
        raise NotImplementedError

    def loss_terms(self, out: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """The loss as named terms ({"ctr": ..., "cvr": ...}); `loss` is their plain sum."""
        raise NotImplementedError

    def loss(self, out: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """The objective: the terms' sum, or the balancer's weighting of them (PCGrad's is the
        sum; it changes the gradients, neural/balancing.py)."""
        terms = self.loss_terms(out, batch)
        if self.balancer is None:
            return sum_terms(terms)
        return self.balancer.combine(terms)

    def calibrate(self, train_means: dict[str, float]) -> None:
        """Adjust output constants from the fitted network's mean outputs on train."""
        raise NotImplementedError

    def prior_like(self, task: str, like: torch.Tensor) -> torch.Tensor:
        index = MAIN_TASKS.index(task)
        return self.prior[index].expand_as(like)


def from_logits(**logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"ctr": sigmoid(a), "ctr_logit": a, ...} for each task given as a logit."""
    out = {}
    for task, logit in logits.items():
        out[task] = torch.sigmoid(logit)
        out[f"{task}_logit"] = logit
    return out


def reduce_rows(loss: torch.Tensor, mask: torch.Tensor | None = None,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row losses, weighted, averaged over the rows of `mask` (or all rows)."""
    if weight is not None:
        loss = loss * weight
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def bce(out: dict[str, torch.Tensor], task: str, target: torch.Tensor,
        mask: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of output `task` from its logit, averaged as `reduce_rows` says."""
    logit = out.get(f"{task}_logit")
    if logit is None:
        raise ValueError(f"output {task!r} has no logit; a product of probabilities takes "
                         "product_bce")
    return reduce_rows(F.binary_cross_entropy_with_logits(logit, target, reduction="none"),
                       mask, weight)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate near 0 and far below it (Maechler's two branches).

    Each branch sees its input clamped into the range where it is finite, so the branch that
    torch.where drops passes back a zero gradient, not NaN. x = 0 (p = 1 in float32, logits
    above ~100) is clamped to the smallest normal number: a large finite loss, as BCE's own
    clamp of log at -100.
    """
    near_zero = torch.log(-torch.expm1(x.clamp(min=-LN2, max=-torch.finfo(x.dtype).tiny)))
    far = torch.log1p(-torch.exp(x.clamp(max=-LN2)))
    return torch.where(x > -LN2, near_zero, far)


def product_log_loss(logit_a: torch.Tensor, logit_b: torch.Tensor,
                     target: torch.Tensor) -> torch.Tensor:
    """Per-row BCE of p = sigmoid(a) x sigmoid(b) against `target`, from the logits.

    log p = logsigmoid(a) + logsigmoid(b) and log(1 - p) = log1mexp(log p): no clamp of p, so
    a positive row with p far below 1e-7 keeps its full loss and gradient.
    """
    log_p = F.logsigmoid(logit_a) + F.logsigmoid(logit_b)
    return -(target * log_p + (1.0 - target) * log1mexp(log_p))


def product_bce(out: dict[str, torch.Tensor], target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of pCTCVR = pCTR x pCVR (the model's "ctcvr" output) from the two towers' logits."""
    return reduce_rows(product_log_loss(out["ctr_logit"], out["cvr_logit"], target), mask)


def clicked_then_product(out: dict[str, torch.Tensor], batch: Batch,
                         cvr_loss: str) -> dict[str, torch.Tensor]:
    """The loss of a two-tower CTR/CVR model, pCTCVR = pCTR x pCVR, in one of two styles.

    "clicked": CTR on all rows + CVR on clicked rows (the classic multi-task setup, biased by
    sample selection). "entire_space": CTR on all rows + CTCVR on all rows (ESMM's loss; the
    CVR tower learns only through the product).
    """
    ctr = bce(out, "ctr", batch.click)
    if cvr_loss == "clicked":
        return {"ctr": ctr, "cvr": bce(out, "cvr", batch.purchase, mask=batch.click)}
    if cvr_loss == "entire_space":
        return {"ctr": ctr, "ctcvr": product_bce(out, batch.conversion)}
    raise ValueError(f"cvr_loss must be 'clicked' or 'entire_space', got {cvr_loss!r}")


CVR_LOSS_HOW = {"clicked": "CTR on all rows + CVR on clicked rows",
                "entire_space": "CTR and CTCVR = pCTR x pCVR on all rows (ESMM-style)"}


def two_tower_outputs(ctr_input: str, cvr_input: str) -> dict[str, str]:
    """A two-tower model's OUTPUTS_HOW, given what each tower reads."""
    return {"ctr": f"sigmoid of the CTR tower on {ctr_input}",
            "cvr": f"sigmoid of the CVR tower on {cvr_input}", "ctcvr": "pCTR x pCVR"}


class TwoTowerNet(RankingNet):
    """A CTR and a CVR tower on what the model's body makes of the input, pCTCVR = pCTR x pCVR,
    trained with either loss of `clicked_then_product` (the `cvr_loss` keyword)."""

    N_LOSS_TERMS = 2

    def __init__(self, layout: FieldLayout, config: NeuralConfig, priors: dict[str, float],
                 cvr_loss: str = "clicked", loss_balancing: str | None = None):
        super().__init__(layout, config, priors, loss_balancing)
        self.cvr_loss = cvr_loss
        self.loss_how = CVR_LOSS_HOW[cvr_loss]

    def make_towers(self, width: int, priors: dict[str, float]) -> None:
        """The two towers on `width` inputs, made where the model's init places this call: the
        order in which layers are made is the order of their random initial draws."""
        config = self.config
        self.ctr_tower = Tower(width, config.tower_dims, config.dropout, priors["ctr"])
        self.cvr_tower = Tower(width, config.tower_dims, config.dropout, priors["cvr"])

    def towers(self, ctr_in: torch.Tensor, cvr_in: torch.Tensor) -> dict[str, torch.Tensor]:
        out = from_logits(ctr=self.ctr_tower(ctr_in), cvr=self.cvr_tower(cvr_in))
        out["ctcvr"] = out["ctr"] * out["cvr"]
        return out

    def loss_terms(self, out, batch):
        return clicked_then_product(out, batch, self.cvr_loss)
