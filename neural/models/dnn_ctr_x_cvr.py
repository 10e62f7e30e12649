"""The ESMM paper's BASE: two single-task DNNs trained apart, pCTCVR = pCTR x pCVR.

The registered `neural/dnn_ctr` (click, all rows) and `neural/dnn_cvr` (purchase, clicked rows
only) are fitted one after the other, each with its own budget and early stopping on its own
task, as the tree pair `baselines/lgbm_ctr_x_cvr` fits its ctr and cvr forests. Same seed, same
fits: its pCTR is dnn_ctr's and its pCVR dnn_cvr's (tested). Its training time is the sum of
both fits.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

PARTS = {"ctr": "neural/dnn_ctr", "cvr": "neural/dnn_cvr"}


class DnnCtrXCvr:
    CONSTANT_OUTPUTS = ()

    def __init__(self):
        from neural.registry import SPECS  # the family's own registry: no upward import

        specs = {spec.key: spec for spec in SPECS}
        self.parts = {task: specs[key].build() for task, key in PARTS.items()}
        self.OUTPUTS_HOW = {
            **{task: f"{PARTS[task]}'s {part.OUTPUTS_HOW[task]}"
               for task, part in self.parts.items()},
            "ctcvr": "pCTR x pCVR (the two separately trained networks)"}
        self.info: dict = {}

    @property
    def threads(self) -> int:
        return self.parts["ctr"].threads

    @threads.setter
    def threads(self, value: int) -> None:  # bench.latency times predict at given threads
        for part in self.parts.values():
            part.threads = value

    def fit(self, data, ctx) -> None:
        self.info = {"parts": ",".join(PARTS.values())}
        for task, part in self.parts.items():
            started = time.perf_counter()
            part.fit(data, ctx)
            # Tuning's checks are the ctr network's only, as for the tree pair's first forest:
            # the cvr network's checks would land on steps the ctr network already reported.
            ctx = dataclasses.replace(ctx, on_validation=None)
            self.info[f"{task}_fit_s"] = time.perf_counter() - started
            self.info.update({f"{task}_{key}": value for key, value in part.info.items()})

    def compose(self, by_task: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The outputs from each part's own outputs ({task: that part's outputs})."""
        ctr, cvr = by_task["ctr"]["ctr"], by_task["cvr"]["cvr"]
        return {"ctr": ctr, "cvr": cvr, "ctcvr": ctr * cvr}

    def predict(self, split) -> dict[str, np.ndarray]:
        return self.compose({task: part.predict(split) for task, part in self.parts.items()})

    def n_params(self) -> int | None:
        counts = [part.n_params() for part in self.parts.values()]
        return None if None in counts else sum(counts)
