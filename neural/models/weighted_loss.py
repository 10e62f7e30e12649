"""One network, one score, trained with a sample-weighted logistic loss (YouTube-style).

Covington et al. (RecSys 2016) train a single logistic unit on clicks with each positive
weighted by its watch time, so that the learned odds approximate expected watch time. Here
the label is the click and a clicked impression that converts weighs 1 + beta, every other
impression 1. The odds then grow with P(click) x (1 + beta x P(purchase | click)): one score
that ranks by clicks and by conversions at once.

beta defaults to "balanced" = train clicks / train conversions, so conversions and clicks
carry the same total weight (a number may be given instead).

The one score s serves all three tasks: each output is s times one constant per task, clipped
to 1 (monotone, so every AUC is the AUC of s). The loss fits the *weighted* mean of s to the
weighted click rate, so the plain mean of s is not the click rate (on tiny data it was 16%
below it); after fitting, each constant is set from the fitted s on the train split so that
the output's mean matches the task's train rate on the rows the task is scored on: pCTR and
pCTCVR over all rows, pCVR over clicked rows (as the CVR AUC is).
"""

from __future__ import annotations

from ccp.tasks import MAIN_TASKS, TASKS
from neural.layers import Tower
from neural.network import RankingNet, bce


class WeightedLoss(RankingNet):
    CALIBRATE_ON_TRAIN = True
    OUTPUTS_HOW = {task: f"the one weighted-LR score x (train {task.upper()} rate / mean "
                         f"train score{' on clicked rows' if TASKS[task].clicked_only else ''}), "
                         "clipped to 1" for task in MAIN_TASKS}

    def __init__(self, layout, config, priors, purchase_weight: str | float = "balanced"):
        super().__init__(layout, config, priors)
        ctr, ctcvr = priors["ctr"], priors["ctcvr"]
        self.beta = ctr / max(ctcvr, 1e-12) if purchase_weight == "balanced" \
            else float(purchase_weight)
        # The loss's fixed point: weighted positive mass / total weight (the initial bias).
        positive = ctr + self.beta * ctcvr
        weighted_rate = positive / (positive + 1.0 - ctr)
        self.tower = Tower(self.in_dim, config.mlp_dims + config.tower_dims, config.dropout,
                           weighted_rate)
        # Output = s x scale[task]; a first guess until `calibrate` measures the mean of s.
        self.register_buffer("scale", self.prior / weighted_rate)
        self.loss_how = (f"BCE on click, weight 1 + {self.beta:.4g} on clicked-and-purchased "
                         "rows, 1 elsewhere")

    def score(self, x):
        logit = self.tower(x)
        s = logit.sigmoid()
        out = {"score_logit": logit}
        for index, task in enumerate(MAIN_TASKS):
            out[task] = (s * self.scale[index]).clamp(max=1.0)
        return out

    def calibrate(self, train_means):
        """Rescale each output so that its train mean (CVR: over clicked rows) is the rate."""
        for index, task in enumerate(MAIN_TASKS):
            if train_means[task] > 0:  # outputs are s x scale: one multiplicative correction
                self.scale[index] *= float(self.prior[index]) / train_means[task]

    def loss_terms(self, out, batch):
        weight = 1.0 + self.beta * batch.conversion
        return {"score": bce(out, "score", batch.click, weight=weight)
                / (1.0 + self.beta * self.prior[2])}
