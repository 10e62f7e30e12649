"""The sanity floor: predict the training prior of each task for every row.

Its AUC is exactly 0.5 (every score ties) and its log loss is the label entropy; every real
model must beat it, and the tests say so.
"""

from __future__ import annotations

import numpy as np

from ccp.tasks import priors_of


class ConstantPrior:
    INPUTS = {"ids": "none", "lists": "none",
              "match": "none", "dense": "none (train label rates only)"}
    OUTPUTS_HOW = {"ctr": "train click rate", "cvr": "train purchases / train clicks",
                   "ctcvr": "train click-and-purchase rate"}

    def __init__(self):
        self.rates: dict[str, float] = {}

    def fit(self, data, ctx) -> None:
        self.rates = priors_of(data.train)

    def predict(self, split) -> dict[str, np.ndarray]:
        return {task: np.full(len(split), rate) for task, rate in self.rates.items()}

    def n_params(self) -> int:
        return len(self.rates)
