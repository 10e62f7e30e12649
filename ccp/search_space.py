"""Hyperparameter search spaces: what `python -m bench tune` may change, per model.

A model's space is its family's declared space (`<family>/search_space.py`, `space_for(spec)`)
plus the model's own knobs declared on its registry spec (`ModelSpec.search`). A model with
nothing to tune says why (`ModelSpec.untuned_why`), so the registry-wide test can require a
space of every other model.

Each `Param` names where its value goes when a model is fitted:

    model    a constructor keyword of the registered class (ModelSpec.build(**params))
    profile  a budget field of ccp/profiles.py, for this model's fits only
    neural   a neural setting of neural/config.py (the FitContext.extra of --set)

Values are JSON scalars (a tuple setting such as mlp_dims is the string "256,128"), so a
configuration round-trips through Optuna's storage and the committed tuned file unchanged.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import asdict, dataclass

TARGETS = ("model", "profile", "neural")


@dataclass(frozen=True)
class Param:
    name: str  # the setting's own name where it goes (constructor keyword / field)
    target: str  # one of TARGETS
    low: float | None = None  # a numeric range [low, high] ...
    high: float | None = None
    log: bool = False  # ... sampled on a log scale
    integer: bool = False
    choices: tuple = ()  # or a set of choices

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"search parameter {self.name!r}: target must be one of "
                             f"{TARGETS}, not {self.target!r}")
        if bool(self.choices) == (self.low is not None):
            raise ValueError(f"search parameter {self.name!r}: give choices or low/high")

    @property
    def key(self) -> str:
        """The name in the study and the tuned file: unique across the three targets."""
        return f"{self.target}.{self.name}"

    def suggest(self, trial):
        """This parameter's value for an Optuna trial."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


def space_for(spec) -> tuple[Param, ...]:
    """The declared space of a registered model: its family's, then its own knobs."""
    if spec.untuned_why:
        return ()
    family = importlib.import_module(f"{spec.family}.search_space")
    space = tuple(family.space_for(spec)) + tuple(spec.search)
    keys = [p.key for p in space]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{spec.key}: search parameters declared twice: {keys}")
    return space


def space_digest(space) -> str:
    """A short hash of a space's declaration: a stored study of another space is not resumed."""
    text = json.dumps([asdict(p) for p in space], sort_keys=True, default=list)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def split_by_target(values: dict) -> dict[str, dict]:
    """{"model.C": 1.0, "profile.gbdt_num_leaves": 31} -> {"model": {"C": 1.0}, ...}."""
    out = {target: {} for target in TARGETS}
    for key, value in values.items():
        target, name = key.split(".", 1)
        if target not in out:
            raise ValueError(f"unknown search parameter target in {key!r}; known: {TARGETS}")
        out[target][name] = value
    return out
