"""AITM (Xi et al., KDD 2021): adaptive information transfer between sequential tasks.

Click precedes conversion. Each task has its own tower over the shared embeddings; the
conversion tower's representation q is combined with information p transferred from the
click tower by a small self-attention over {p, q}. Labels as in the paper: click, and
conversion = click and purchase, both on all rows; a calibrator term penalises
P(conversion) > P(click), which the funnel forbids.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neural.layers import Tower, mlp
from neural.network import RankingNet, bce, from_logits


class AdaptiveTransfer(nn.Module):
    """Attention over {transferred p, own q}: weights from <h1(u), h2(u)>, values h3(u)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, p, q):
        u = torch.stack([p, q], dim=1)  # (B, 2, d)
        weights = ((self.query(u) * self.key(u)).sum(-1) * self.scale).softmax(dim=1)  # (B, 2)
        return (weights.unsqueeze(-1) * self.value(u)).sum(1)  # (B, d)


class AITM(RankingNet):
    N_LOSS_TERMS = 3  # CTR, CTCVR, calibrator
    OUTPUTS_HOW = {"ctr": "sigmoid of the click tower",
                   "cvr": "min(1, pCTCVR / pCTR)",
                   "ctcvr": "sigmoid of the conversion tower (after transfer from the click "
                            "tower)"}

    def __init__(self, layout, config, priors, calibrator_weight: float = 0.6):
        super().__init__(layout, config, priors)
        dims = config.mlp_dims
        self.calibrator_weight = calibrator_weight
        self.click_body = mlp(self.in_dim, dims, config.dropout)
        self.conversion_body = mlp(self.in_dim, dims, config.dropout)
        self.transfer = mlp(dims[-1], (dims[-1],))  # what the click task passes on
        self.attention = AdaptiveTransfer(dims[-1])
        self.click_head = Tower(dims[-1], config.tower_dims, config.dropout, priors["ctr"])
        self.conversion_head = Tower(dims[-1], config.tower_dims, config.dropout,
                                     priors["ctcvr"])
        self.loss_how = (f"CTR (all rows) + CTCVR (all rows) + {calibrator_weight} x "
                         "mean(max(pCTCVR - pCTR, 0))")

    def score(self, x):
        q_click = self.click_body(x)  # (B, d)
        q_conversion = self.conversion_body(x)
        z = self.attention(self.transfer(q_click), q_conversion)  # (B, d)
        out = from_logits(ctr=self.click_head(q_click), ctcvr=self.conversion_head(z))
        out["cvr"] = (out["ctcvr"] / out["ctr"].clamp(min=1e-7)).clamp(max=1.0)
        return out

    def loss_terms(self, out, batch):
        calibrator = torch.relu(out["ctcvr"] - out["ctr"]).mean()
        return {"ctr": bce(out, "ctr", batch.click),
                "ctcvr": bce(out, "ctcvr", batch.conversion),
                "calibrator": self.calibrator_weight * calibrator}
