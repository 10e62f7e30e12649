"""The one protocol every model follows; the harness owns timing, threads and evaluation.

    model = spec.build()
    model.fit(data, ctx)          # data.train and data.valid only: data.test is None
    outputs = model.predict(split)  # {"ctr": pCTR, "cvr": pCVR, "ctcvr": pCTCVR}, each (n,)

`OUTPUTS_HOW` (a class attribute) says how each output is formed, e.g.
{"ctr": "own head", "cvr": "own head", "ctcvr": "pCTR x pCVR"}.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bench.tasks import MAIN_TASKS


@dataclass
class FitContext:
    seed: int
    threads: int
    profile: object  # bench.profiles.Profile
    progress: bool = True
    extra: dict = field(default_factory=dict)  # model options from the CLI (--set key=value)
    # Called at each intermediate validation check of a fit as on_validation(step, score),
    # score higher = better; it may raise to end the fit early (tuning's pruner: bench/tuning).
    on_validation: Callable[[int, float], None] | None = None


class RankingModel(Protocol):
    OUTPUTS_HOW: dict[str, str]

    def fit(self, data, ctx: FitContext) -> None: ...

    def predict(self, split) -> dict[str, np.ndarray]: ...

    def n_params(self) -> int | None: ...


def seed_everything(seed: int) -> None:
    """The one seeding function: Python, NumPy, and torch when it is already imported."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ["PYTHONHASHSEED"] = str(seed)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def check_outputs(outputs: dict, n_rows: int) -> dict[str, np.ndarray]:
    """Validate a model's predictions: all three keys, right length, probabilities, no NaN."""
    checked = {}
    for key in MAIN_TASKS:
        if key not in outputs:
            raise ValueError(f"model output lacks {key!r}")
        values = np.asarray(outputs[key], dtype=np.float64).reshape(-1)
        if len(values) != n_rows:
            raise ValueError(f"output {key!r} has {len(values)} rows, expected {n_rows}")
        if not np.isfinite(values).all():
            raise ValueError(f"output {key!r} has NaN or infinite values")
        if values.min() < 0 or values.max() > 1:
            raise ValueError(f"output {key!r} is not a probability (range "
                             f"{values.min():.4g}..{values.max():.4g})")
        checked[key] = values
    return checked
