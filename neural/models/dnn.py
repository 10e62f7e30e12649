"""Single-task embedding + MLP baselines: one network per task (the ESMM paper's BASE).

Each learns one task; for the tasks it does not model it outputs the training prior (a
constant, so its AUC there is exactly 0.5) or a product with that prior, as OUTPUTS_HOW says.
Each is early-stopped on its own task only (STOP_TASKS): its other outputs are the prior or a
product with it, nothing to choose epochs by.
"""

from __future__ import annotations

from neural.layers import Tower
from neural.network import RankingNet, bce, from_logits


class SingleTaskDNN(RankingNet):
    TASK = ""

    def __init__(self, layout, config, priors):
        super().__init__(layout, config, priors)
        self.tower = Tower(self.in_dim, config.mlp_dims + config.tower_dims, config.dropout,
                           priors[self.TASK])

    def score(self, x):
        out = from_logits(**{self.TASK: self.tower(x)})
        for task in self.CONSTANT_OUTPUTS:
            out[task] = self.prior_like(task, out[self.TASK])
        return self.derived(out)

    def derived(self, out):
        """The output neither learned nor constant: pCTCVR = pCTR x pCVR."""
        out["ctcvr"] = out["ctr"] * out["cvr"]
        return out


class DnnCtr(SingleTaskDNN):
    TASK = "ctr"
    STOP_TASKS = ("ctr",)
    CONSTANT_OUTPUTS = ("cvr",)
    OUTPUTS_HOW = {"ctr": "sigmoid of the one tower", "cvr": "train CVR prior (constant)",
                   "ctcvr": "pCTR x train CVR prior"}

    def loss_terms(self, out, batch):
        return {"ctr": bce(out, "ctr", batch.click)}


class DnnCvr(SingleTaskDNN):
    """Trained on clicked impressions only, with purchase as the label."""

    TASK = "cvr"
    STOP_TASKS = ("cvr",)
    CONSTANT_OUTPUTS = ("ctr",)
    TRAIN_ROWS = "clicked"
    OUTPUTS_HOW = {"ctr": "train CTR prior (constant)",
                   "cvr": "sigmoid of the one tower (trained on clicked rows)",
                   "ctcvr": "train CTR prior x pCVR"}

    def loss_terms(self, out, batch):
        # The trainer feeds clicked rows only; the mask keeps the loss right on any batch.
        return {"cvr": bce(out, "cvr", batch.purchase, mask=batch.click)}


class DnnCtcvr(SingleTaskDNN):
    TASK = "ctcvr"
    STOP_TASKS = ("ctcvr",)
    CONSTANT_OUTPUTS = ("ctr",)
    OUTPUTS_HOW = {"ctr": "train CTR prior (constant)",
                   "cvr": "min(1, pCTCVR / train CTR prior)",
                   "ctcvr": "sigmoid of the one tower (click and purchase, all rows)"}

    def derived(self, out):
        out["cvr"] = (out["ctcvr"] / out["ctr"]).clamp(max=1.0)
        return out

    def loss_terms(self, out, batch):
        return {"ctcvr": bce(out, "ctcvr", batch.conversion)}
