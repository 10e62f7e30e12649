"""Prediction in large batches, and the validation AUCs a neural fit is checked on.

A fit is checked several times per epoch, so a check must not rebuild what does not change
between checks: the rows its tasks are scored on and their input batches are prepared once
(`ValidationChecks`); each check is then forward passes and an AUC per task.
"""

from __future__ import annotations

import numpy as np
import torch

from ccp.metrics import auc
from ccp.tasks import MAIN_TASKS, TASKS
from neural.inputs import Batch, TensorSplit


def consecutive_batches(data: TensorSplit, batch_size: int):
    """The split's rows in order, `batch_size` at a time."""
    for start in range(0, len(data), batch_size):
        yield data.batch(torch.arange(start, min(start + batch_size, len(data))))


@torch.no_grad()
def predict_batches(network, batches) -> dict[str, np.ndarray]:
    """Outputs for the rows of `batches`, in order."""
    network.eval()
    parts = {key: [] for key in MAIN_TASKS}
    for batch in batches:
        out = network(batch)
        for key in MAIN_TASKS:
            parts[key].append(out[key].float())
    return {key: (torch.cat(v).numpy().astype(np.float64) if v else np.zeros(0))
            for key, v in parts.items()}


def predict_tensors(network, data: TensorSplit | list[Batch],
                    batch_size: int) -> dict[str, np.ndarray]:
    """Outputs for every row of a `TensorSplit`, or of batches prepared from one."""
    batches = data if isinstance(data, list) else consecutive_batches(data, batch_size)
    return predict_batches(network, batches)


def validation_aucs(outputs: dict[str, np.ndarray], split, tasks,
                    weights: np.ndarray | None = None) -> dict[str, float]:
    """AUC per task on the rows ccp.tasks defines (CVR on clicked rows), with row weights
    where the rows are a weighted sample (`check_rows`)."""
    weights = np.ones(len(split)) if weights is None else weights
    return {task: auc(*TASKS[task].scored(split, outputs), weights[TASKS[task].rows(split.click)])
            for task in tasks}


CHECK_ROWS_SEED = 0  # the same check rows for every model and seed


def check_rows(split, tasks, unclicked_share: float):
    """The rows a validation check scores, and their weights.

    Only clicked rows when CVR (scored on clicked rows) is the only task. Otherwise every
    clicked row and a fixed random `unclicked_share` of the unclicked ones, weighted by
    1 / unclicked_share: every positive of every task is clicked, so the weighted AUCs estimate
    the full split's without bias while scoring a fraction of its rows.
    """
    if all(TASKS[task].clicked_only for task in tasks):
        return split.clicked(), None
    if unclicked_share >= 1.0:
        return split, None
    clicked = split.click.astype(bool)
    kept = clicked | (np.random.default_rng(CHECK_ROWS_SEED).random(len(split)) < unclicked_share)
    sample = split.take(np.flatnonzero(kept), name=f"{split.name}-checks")
    return sample, np.where(sample.click.astype(bool), 1.0, 1.0 / unclicked_share)


class ValidationChecks:
    """The validation AUCs of `tasks` for one fit, check after check.

    The rows are `check_rows`'s. A split in memory has its batches built once and kept; one
    the ranker processes in chunks is scored through `ranker.score_split`, chunk by chunk,
    each time.
    """

    def __init__(self, ranker, split, tasks, unclicked_share: float = 1.0):
        self.ranker, self.tasks = ranker, tuple(tasks)
        self.split, self.weights = check_rows(split, self.tasks, unclicked_share)
        self.batches = None
        if ranker.chunks_of(self.split) is None:
            tensors = TensorSplit(self.split, ranker.layout, ranker.config.pooling)
            self.batches = list(consecutive_batches(tensors, ranker.config.predict_batch_size))

    def aucs(self) -> dict[str, float]:
        outputs = self.ranker.score_split(self.split, self.batches)
        return validation_aucs(outputs, self.split, self.tasks, self.weights)
