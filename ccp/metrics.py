"""Metrics exactly as shared/ALICCP.md defines them, and unit-level bootstrap intervals.

Each task's rows and labels are ccp.tasks'. AUCs are computed over the whole row set at
once, never averaged per batch.
"""

from __future__ import annotations

import numpy as np


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


def auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC, with optional row weights; NaN when the rows hold only one class."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    weights = np.ones(len(order)) if weights is None else np.asarray(weights, np.float64)[order]
    return _weighted_auc_sorted(labels[order], weights, _tie_blocks(sorted_scores))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    labels = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    if len(p) == 0:
        return float("nan")
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def bootstrap_aucs(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                   n_boot: int, seed: int) -> np.ndarray:
    """AUCs of `n_boot` resamples of whole groups (ccp.stats' resampling units), drawn with
    replacement.

    Rows of one unit are correlated, so units, not rows, are resampled. The resamples depend
    only on (groups, n_boot, seed), so two models scored on the same rows get the same
    resamples: the difference of their replicates is a paired bootstrap. The AUC of every
    resample at once: a resample is a weight per group, and the weighted Mann-Whitney sums are
    sparse (rows x groups) counts times the weights, so no resample touches every row.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(group_index) else 0
    if n_boot == 0 or n_groups == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
                        for _ in range(n_boot)]).astype(np.float64)
    return _resampled_aucs(labels, scores, group_index, n_groups, weights.T)


def _resampled_aucs(labels, scores, group_index, n_groups, weights) -> np.ndarray:
    """Weighted AUC (as `_weighted_auc_sorted`) for each column of weights (groups, B).

    Tie blocks holding a positive are numbered k = 0..K-1 in score order; every negative is
    "below" the positive blocks above its own block and tied with a positive of its own block.
    So, per column: positive weight P[k], negative weight in the segment from positive block
    k-1 (inclusive) up to block k (exclusive) S[k], negative weight tied in block k T[k]; the
    Mann-Whitney sum is sum_k P[k] * (cumsum(S)[k] + T[k] / 2)."""
    from scipy import sparse

    order = np.argsort(scores, kind="mergesort")
    y, g = labels[order], group_index[order]
    starts = _tie_blocks(scores[order])
    block = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    has_positive = np.bincount(block, weights=y) > 0
    # k of the positive block at or above each row's block (negatives above the last: none)
    k_at_or_above = np.cumsum(has_positive)[block] - has_positive[block]
    positive = y > 0
    tied = ~positive & has_positive[block]
    k_tied = np.cumsum(has_positive)[block] - 1
    n_k = int(has_positive.sum())

    def counts(k_rows, rows):
        keep = rows & (k_rows < n_k)
        return sparse.csr_matrix((np.ones(int(keep.sum())), (k_rows[keep], g[keep])),
                                 shape=(n_k, n_groups))

    # A tied negative is in its own block's T, and below the next positive blocks: its
    # segment is the one after its block.
    below = counts(np.where(tied, k_tied + 1, k_at_or_above), ~positive)
    pos = counts(k_tied, positive) @ weights
    total_pos = np.bincount(g, weights=y, minlength=n_groups) @ weights
    total_neg = np.bincount(g, weights=1 - y, minlength=n_groups) @ weights
    wins = (pos * (np.cumsum(below @ weights, axis=0) + 0.5 * (counts(k_tied, tied) @ weights))
            ).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = wins / (total_pos * total_neg)
    return np.where((total_pos > 0) & (total_neg > 0), out, np.nan)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict:
    """GAUC: the AUC within each group (user), averaged with weights = the group's row count.

    Groups holding one class only have no AUC and are left out (the usual convention); the
    result says how many groups and what share of the rows took part, so a GAUC resting on a
    sliver of the data is visible. Vectorised: one sort by (group, score), no loop over groups.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    empty = {"gauc": float("nan"), "gauc_groups": 0, "gauc_row_share": 0.0}
    if len(labels) == 0:
        return empty
    _, group_index = np.unique(groups, return_inverse=True)
    order = np.lexsort((scores, group_index))
    g, s, y = group_index[order], scores[order], labels[order]
    # A tie block is a run of equal scores within one group.
    new_block = np.ones(len(g), dtype=bool)
    new_block[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(new_block)
    block_group = g[starts]
    pos = np.add.reduceat(y, starts)
    neg = np.add.reduceat(1 - y, starts)
    # Negatives below each block within its group: cumulative sum restarted at each group.
    cum_neg = np.cumsum(neg) - neg
    first_block = np.ones(len(starts), dtype=bool)
    first_block[1:] = block_group[1:] != block_group[:-1]
    group_offset = np.maximum.accumulate(np.where(first_block, cum_neg, 0.0))
    neg_below = cum_neg - group_offset
    n_groups = int(group_index.max()) + 1
    wins = np.bincount(block_group, weights=pos * (neg_below + 0.5 * neg), minlength=n_groups)
    total_pos = np.bincount(block_group, weights=pos, minlength=n_groups)
    total_neg = np.bincount(block_group, weights=neg, minlength=n_groups)
    usable = (total_pos > 0) & (total_neg > 0)
    if not usable.any():
        return empty
    rows = total_pos + total_neg
    per_group = wins[usable] / (total_pos[usable] * total_neg[usable])
    return {"gauc": float(np.average(per_group, weights=rows[usable])),
            "gauc_groups": int(usable.sum()),
            "gauc_row_share": float(rows[usable].sum() / len(labels))}


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> list[list]:
    """[mean predicted, observed rate, rows] per bin of equal row count (by predicted value).

    Equal-count bins, because click and purchase rates are a few percent or less: equal-width
    bins over [0, 1] would put almost every row in the first bin. Tied predictions stay in one
    bin, so a constant predictor gives a single bin.
    """
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return []
    edges = np.quantile(probs, np.linspace(0, 1, n_bins + 1)[1:-1])
    which = np.searchsorted(np.unique(edges), probs, side="right")
    counts = np.bincount(which)
    predicted = np.bincount(which, weights=probs)
    observed = np.bincount(which, weights=labels)
    return [[float(predicted[b] / counts[b]), float(observed[b] / counts[b]), int(counts[b])]
            for b in np.flatnonzero(counts)]


def roc_points(labels: np.ndarray, scores: np.ndarray, n_points: int = 101
               ) -> tuple[list[float], list[float]]:
    """The ROC curve sampled at `n_points` evenly spaced false-positive rates.

    Tied scores form straight segments (as in the AUC's tie handling), so linear
    interpolation between the curve's vertices is exact; the area under the sampled points
    approaches the AUC as n_points grows.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
    if n_pos == 0 or n_neg == 0:
        return [], []
    order = np.argsort(-scores, kind="mergesort")  # highest score first
    starts = _tie_blocks(scores[order])
    y = labels[order]
    tpr = np.concatenate(([0.0], np.cumsum(np.add.reduceat(y, starts)))) / n_pos
    fpr = np.concatenate(([0.0], np.cumsum(np.add.reduceat(1 - y, starts)))) / n_neg
    # Runs of vertices with equal fpr are vertical steps: a grid point on one takes the top
    # of the step; one between two fpr values lies on the segment from the top of the lower
    # step to the bottom of the higher one.
    xs, first = np.unique(fpr, return_index=True)
    last = len(fpr) - 1 - np.unique(fpr[::-1], return_index=True)[1]
    grid = np.linspace(0, 1, n_points)
    j = np.minimum(np.searchsorted(xs, grid, side="left"), len(xs) - 1)
    on_vertex = xs[j] == grid
    lower = np.maximum(j - 1, 0)
    span = np.where(on_vertex, 1.0, xs[j] - xs[lower])
    frac = np.where(on_vertex, 0.0, (grid - xs[lower]) / span)
    between = tpr[last[lower]] + frac * (tpr[first[j]] - tpr[last[lower]])
    values = np.where(on_vertex, tpr[last[j]], between)
    return ([round(float(x), 5) for x in grid], [round(float(v), 5) for v in values])
