"""Metrics exactly as shared/ALICCP.md defines them, and request-level bootstrap intervals.

| task       | prediction | label                | rows                          |
| ctr        | pCTR       | click                | all impressions               |
| cvr        | pCVR       | purchase             | clicked impressions only      |
| ctcvr      | pCTCVR     | click and purchase   | all impressions               |
| cvr_entire | pCVR       | purchase             | all impressions (what several libraries call "CVR AUC") |

AUCs are computed over the whole row set at once, never averaged per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Task:
    name: str
    prediction: str  # key of the model's output dict
    definition: str

    def rows(self, click: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows this task is evaluated on."""
        return click == 1 if self.name == "cvr" else np.ones(len(click), dtype=bool)

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


TASKS = {
    "ctr": Task("ctr", "ctr", "AUC of pCTR against click, on all impressions"),
    "cvr": Task("cvr", "cvr", "AUC of pCVR against purchase, on clicked impressions only "
                              "(ESMM paper's definition)"),
    "ctcvr": Task("ctcvr", "ctcvr", "AUC of pCTCVR against click-and-purchase, "
                                    "on all impressions"),
    "cvr_entire": Task("cvr_entire", "cvr", "AUC of pCVR against purchase, on all impressions "
                                            "(the entire-space 'CVR AUC' of several libraries)"),
}
MAIN_TASKS = ("ctr", "cvr", "ctcvr")


def _tie_blocks(sorted_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal scores in an ascending array."""
    if len(sorted_scores) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(np.diff(sorted_scores)) + 1
    return np.concatenate(([0], change))


def _weighted_auc_sorted(labels_sorted, weights_sorted, starts) -> float:
    """AUC with row weights, given rows sorted by score and the starts of tie blocks.

    Each positive scores 1 for every lower-scored negative and 1/2 for every tied one
    (the Mann-Whitney statistic), weighted; this equals sklearn's roc_auc_score.
    """
    pos_w = np.add.reduceat(weights_sorted * labels_sorted, starts)
    neg_w = np.add.reduceat(weights_sorted * (1 - labels_sorted), starts)
    total_pos, total_neg = pos_w.sum(), neg_w.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    neg_below = np.cumsum(neg_w) - neg_w
    return float((pos_w * (neg_below + 0.5 * neg_w)).sum() / (total_pos * total_neg))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN when the rows hold only one class."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    return _weighted_auc_sorted(labels[order], np.ones(len(order)), _tie_blocks(sorted_scores))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    labels = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    if len(p) == 0:
        return float("nan")
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def bootstrap_aucs(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                   n_boot: int, seed: int) -> np.ndarray:
    """AUCs of `n_boot` resamples of whole groups (requests), with replacement.

    Impressions of one request are correlated, so requests, not rows, are resampled. The
    resamples depend only on (groups, n_boot, seed), so two models scored on the same rows get
    the same resamples: the difference of their replicates is a paired bootstrap.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(group_index) else 0
    order = np.argsort(scores, kind="mergesort")
    labels_sorted = labels[order]
    group_sorted = group_index[order]
    starts = _tie_blocks(scores[order])
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        group_weight = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        out[b] = _weighted_auc_sorted(labels_sorted, group_weight[group_sorted].astype(float),
                                      starts)
    return out


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
