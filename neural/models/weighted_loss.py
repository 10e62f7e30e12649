"""One network, one score, trained with a sample-weighted logistic loss (YouTube-style).

Covington et al. (RecSys 2016) train a single logistic unit on clicks with each positive
weighted by its watch time, so that the learned odds approximate expected watch time. Here
the label is the click and a clicked impression that converts weighs 1 + beta, every other
impression 1. The odds then grow with P(click) x (1 + beta x P(purchase | click)): one score
that ranks by clicks and by conversions at once.

beta defaults to "balanced" = train clicks / train conversions, so conversions and clicks
carry the same total weight (a number may be given instead).

The one score s serves all three tasks. Each output is s scaled by one constant so that its
mean on train matches the task's train rate (monotone, so every AUC is the AUC of s).
"""

from __future__ import annotations

from neural.layers import Tower
from neural.network import RankingNet, bce


class WeightedLoss(RankingNet):
    TASKS = ("ctr", "ctcvr")
    OUTPUTS_HOW = {task: f"the one weighted-LR score x (train {task.upper()} rate / expected "
                         "train score), clipped to 1" for task in ("ctr", "cvr", "ctcvr")}

    def __init__(self, layout, config, priors, purchase_weight: str | float = "balanced"):
        super().__init__(layout, config, priors)
        ctr, ctcvr = priors["ctr"], priors["ctcvr"]
        self.beta = ctr / max(ctcvr, 1e-12) if purchase_weight == "balanced" \
            else float(purchase_weight)
        # Expected training score: weighted positive mass / total weighted mass.
        positive = ctr + self.beta * ctcvr
        self.score_mean = positive / (positive + 1.0 - ctr)
        self.tower = Tower(self.in_dim, config.mlp_dims + config.tower_dims, config.dropout,
                           self.score_mean)
        self.loss_how = (f"BCE on click, weight 1 + {self.beta:.4g} on clicked-and-purchased "
                         "rows, 1 elsewhere")

    def score(self, x):
        logit = self.tower(x)
        s = logit.sigmoid()
        out = {"score_logit": logit}
        for task in ("ctr", "cvr", "ctcvr"):
            out[task] = (s * (self.prior_like(task, s) / self.score_mean)).clamp(max=1.0)
        return out

    def loss(self, out, batch):
        weight = 1.0 + self.beta * batch.conversion
        return bce(out, "score", batch.click, weight=weight) / (1.0 + self.beta * self.prior[2])
