"""When a neural fit is validated, which weights it keeps, and when it stops.

Budgets are counted in optimizer steps, so that a model trained on clicked rows only (about
20x fewer than all rows) gets as many steps and checks as one trained on all rows, not as many
epochs of its small split. The unit is one epoch of all train rows at the profile's batch size:
the fit is validated `neural_checks_per_epoch` times per such epoch (and at least as often per
epoch of its own rows), keeps the weights of its best check, stops after as many steps without
improvement as `neural_patience` checks of an all-rows model take, and never runs past
`neural_max_epochs` such epochs (the cap; `stopped_by` says which of the two ended it).

On a small train set the unit may be floored (`neural_min_epoch_rows`, default off): an epoch
of 2,000 rows is one step at batch 2,048, so a cap of a few such epochs would stop a network
after a few steps while the trees boost for hundreds of rounds. With the floor, the unit is an
epoch of that many rows (2,000 rows, floor 50,000: 25 passes), and the model's own epoch is
scaled alike, so checks, patience and cap keep the proportions they have on large data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CheckPlan:
    epoch_steps: int  # optimizer steps of one epoch over all train rows (the unit)
    check_every: int  # steps between two validation checks (the last check ends the cap)
    max_steps: int  # the cap
    patience: int  # checks without improvement that stop the fit (the same steps for all)
    # Share of unclicked validation rows a check scores (neural.validation.check_rows).
    check_unclicked: float = 1.0

    @classmethod
    def from_profile(cls, profile, epoch_steps: int, own_epoch_steps: int,
                     batch_size: int | None = None) -> CheckPlan:
        """`own_epoch_steps`: steps of one epoch over the model's own training rows. A model
        on clicked rows is checked as often per epoch of its rows (it passes its best within
        a few of them), with the same patience and cap in steps as every model.
        `batch_size`: the fit's, for the floor on the unit (module doc)."""
        floor_rows = getattr(profile, "neural_min_epoch_rows", 0)
        if floor_rows and batch_size:
            floor_steps = math.ceil(floor_rows / batch_size)
            if floor_steps > epoch_steps:
                own_epoch_steps = math.ceil(own_epoch_steps * floor_steps / epoch_steps)
                epoch_steps = floor_steps
        per_epoch = profile.neural_checks_per_epoch
        unit_every = max(1, math.ceil(epoch_steps / per_epoch))
        every = max(1, min(unit_every, math.ceil(own_epoch_steps / per_epoch)))
        return cls(epoch_steps=epoch_steps, check_every=every,
                   max_steps=profile.neural_max_epochs * epoch_steps,
                   patience=math.ceil(profile.neural_patience * unit_every / every),
                   check_unclicked=getattr(profile, "neural_check_unclicked", 1.0))

    @property
    def max_checks(self) -> int:
        return math.ceil(self.max_steps / self.check_every)

    def steps_before(self, check: int) -> int:
        """Steps to take before check number `check` (1-based)."""
        return min(self.check_every, self.max_steps - (check - 1) * self.check_every)

    def as_info(self) -> dict:
        return {"check_every_steps": self.check_every, "epoch_steps_all_rows": self.epoch_steps,
                "max_checks": self.max_checks, "max_steps": self.max_steps,
                "patience_checks": self.patience, "check_unclicked_share": self.check_unclicked}


class BestCheckpoint:
    """The weights of the best check so far; `update` says whether patience ran out."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_score, self.best_check, self.best_state = -np.inf, 0, None
        self.bad_checks = 0

    def update(self, check: int, score: float, network) -> bool:
        if score > self.best_score:
            self.best_score, self.best_check, self.bad_checks = score, check, 0
            self.best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            return False
        self.bad_checks += 1
        return self.bad_checks >= self.patience

    def restore(self, network) -> None:
        if self.best_state is not None:
            network.load_state_dict(self.best_state)


@dataclass
class FitLog:
    """What a checked fit did, for its record."""

    best: BestCheckpoint
    own_rows: int  # rows of one epoch of the model's own training rows
    steps: int = 0
    rows_seen: int = 0
    loop_s: float = 0.0  # training steps only
    loop_cpu_s: float = 0.0
    check_s: float = 0.0  # validation checks only
    check_rows: int = 0  # validation rows each check scores
    stopped_by: str = "cap"
    history: list = field(default_factory=list)

    def add_steps(self, steps: int, rows: int, seconds: float, cpu_seconds: float) -> None:
        self.steps += steps
        self.rows_seen += rows
        self.loop_s += seconds
        self.loop_cpu_s += cpu_seconds

    def as_info(self, plan: CheckPlan) -> dict:
        best = self.history[self.best.best_check - 1] if self.best.best_check else {}
        return {
            **plan.as_info(), "check_rows": self.check_rows, "stopped_by": self.stopped_by,
            "checks_run": len(self.history), "steps_run": self.steps,
            "epochs_run": round(self.rows_seen / max(self.own_rows, 1), 4),
            "best_check": self.best.best_check, "best_step": best.get("step", 0),
            "best_epochs_seen": best.get("epochs_seen", 0.0),
            "best_valid_score": self.best.best_score,
            # The cap stopped a fit whose last check was its best: it might have gone on.
            "best_is_last_check": bool(self.history)
            and self.best.best_check == len(self.history),
            "train_loop_s": self.loop_s,
            "train_samples_per_s": self.rows_seen / max(self.loop_s, 1e-9),
            "train_loop_cpu_s": self.loop_cpu_s,
            "valid_check_s": self.check_s,
            "valid_check_s_mean": self.check_s / max(len(self.history), 1),
            "history": json.dumps(self.history),
        }
