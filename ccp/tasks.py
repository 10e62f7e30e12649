"""Task rules, in one place: which rows each task uses, which label, which train prior, and
what the report calls it. Metrics, trainers, trees, serving checks and the report read them here.

| task       | prediction | label                | rows                          |
| ctr        | pCTR       | click                | all impressions               |
| cvr        | pCVR       | purchase             | clicked impressions only      |
| ctcvr      | pCTCVR     | click and purchase   | all impressions               |
| cvr_entire | pCVR       | purchase             | all impressions (several libraries' "CVR AUC") |

A model is trained on a task's rows and labels as it is scored on them (shared/ALICCP.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The three outputs every model predicts, in this order; also the tasks every verdict compares.
MAIN_TASKS = ("ctr", "cvr", "ctcvr")


@dataclass(frozen=True)
class Task:
    name: str
    prediction: str  # key of the model's output dict
    definition: str
    title: str  # the report's column title
    short: str  # the report's short name

    @property
    def clicked_only(self) -> bool:
        return self.name == "cvr"

    def rows(self, click: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows this task is evaluated on."""
        return click == 1 if self.clicked_only else np.ones(len(click), dtype=bool)

    def labels(self, click: np.ndarray, purchase: np.ndarray) -> np.ndarray:
        if self.name == "ctr":
            return click.astype(np.int8)
        if self.name == "ctcvr":
            return (click & purchase).astype(np.int8)
        return purchase.astype(np.int8)

    def truth(self, p_click: np.ndarray, p_conversion: np.ndarray) -> np.ndarray:
        """The true probability of this task's label on its rows (synthetic data)."""
        if self.name == "ctr":
            return p_click
        if self.name == "cvr":
            return p_conversion
        return p_click * p_conversion  # P(click and purchase); also P(purchase) entire-space

    def rows_and_labels(self, split) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the task's rows of `split` and their labels: what a model trains on."""
        rows = (np.flatnonzero(split.click == 1) if self.clicked_only
                else np.arange(len(split)))
        return rows, self.labels(split.click[rows], split.purchase[rows])

    def scored(self, split, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores) on the task's rows of `split`, from a model's outputs for it."""
        rows = self.rows(split.click)
        return self.labels(split.click, split.purchase)[rows], outputs[self.prediction][rows]


TASKS = {
    "ctr": Task("ctr", "ctr", "AUC of pCTR against click, on all impressions",
                "CTR AUC", "CTR"),
    "cvr": Task("cvr", "cvr", "AUC of pCVR against purchase, on clicked impressions only "
                              "(ESMM paper's definition)", "CVR AUC (clicked)", "CVR (clicked)"),
    "ctcvr": Task("ctcvr", "ctcvr", "AUC of pCTCVR against click-and-purchase, "
                                    "on all impressions", "CTCVR AUC", "CTCVR"),
    "cvr_entire": Task("cvr_entire", "cvr", "AUC of pCVR against purchase, on all impressions "
                                            "(the entire-space 'CVR AUC' of several libraries)",
                       "purchase AUC, entire space (pCVR)", "purchase, entire space"),
}
TASK_ORDER = tuple(TASKS)  # the report's column order


def priors_of(train) -> dict[str, float]:
    """Each main task's label rate on its own train rows (CVR: purchases per click)."""
    n = max(len(train), 1)
    clicks = float(train.click.sum())
    conversions = float((train.click & train.purchase).sum())
    return {"ctr": clicks / n, "cvr": conversions / max(clicks, 1.0), "ctcvr": conversions / n}
