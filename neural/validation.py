"""Prediction in large batches, and the validation AUCs a neural fit is checked on.

A fit is checked several times per epoch, so a check must not rebuild what does not change
between checks: the rows its tasks are scored on and their input batches are prepared once
(`ValidationChecks`); each check is then forward passes and an AUC per task.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.metrics import auc
from bench.tasks import MAIN_TASKS, TASKS
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


def validation_aucs(outputs: dict[str, np.ndarray], split, tasks) -> dict[str, float]:
    """AUC per task on the rows bench.tasks defines (CVR on clicked rows)."""
    return {task: auc(*TASKS[task].scored(split, outputs)) for task in tasks}


class ValidationChecks:
    """The validation AUCs of `tasks` for one fit, check after check.

    Only the rows the tasks are scored on are scored: every row, or the clicked ones when CVR
    (scored on clicked rows) is the only task, which is all that a model trained on clicked
    rows checks. A split in memory has its batches built once and kept; one the ranker
    processes in chunks is scored through `ranker.score_split`, chunk by chunk, each time.
    """

    def __init__(self, ranker, split, tasks):
        self.ranker, self.tasks = ranker, tuple(tasks)
        clicked_only = all(TASKS[task].clicked_only for task in self.tasks)
        self.split = split.clicked() if clicked_only else split
        self.batches = None
        if ranker.chunks_of(self.split) is None:
            tensors = TensorSplit(self.split, ranker.layout, ranker.config.pooling)
            self.batches = list(consecutive_batches(tensors, ranker.config.predict_batch_size))

    def aucs(self) -> dict[str, float]:
        outputs = self.ranker.score_split(self.split, self.batches)
        return validation_aucs(outputs, self.split, self.tasks)
