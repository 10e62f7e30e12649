"""The one protocol every model follows; the harness owns timing, threads and evaluation.

    model = spec.build()
    model.fit(data, ctx)          # data.train and data.valid only: data.test is None
    outputs = model.predict(split)  # {"ctr": pCTR, "cvr": pCVR, "ctcvr": pCTCVR}, each (n,)

`OUTPUTS_HOW` (a class attribute) says how each output is formed, e.g.
{"ctr": "own head", "cvr": "own head", "ctcvr": "pCTR x pCVR"}.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ccp.tasks import MAIN_TASKS


@dataclass
class FitContext:
    seed: int
    threads: int
    profile: object  # ccp.profiles.Profile
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


# The groups the report compares (best of each group, one colour each); "floor": the sanity
# floor every real model must beat.
GROUPS = ("GBDT", "neural", "linear", "floor")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # e.g. "lgbm_ctr_x_cvr", "mmoe"
    family: str  # "baselines" or "neural": the package the model lives in
    target: str  # "module.path:ClassName"
    description: str
    params: dict = field(default_factory=dict)  # constructor keyword arguments
    # The report's group, one of GROUPS: declared, never guessed from the name.
    group: str = field(kw_only=True)
    # The model's own tunable knobs (ccp.search_space.Param), beside its family's space.
    search: tuple = ()
    # Why the model has no search space at all (then `python -m bench tune` skips it).
    untuned_why: str = ""

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"model {self.family}/{self.name}: group {self.group!r} is not one "
                             f"of {GROUPS}")

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def model_class(self) -> type:
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def build(self, **overrides):
        return self.model_class()(**{**self.params, **overrides})

    def keywords(self) -> dict:
        """The keywords `--set` may give this model: its constructor's optional arguments (a
        class may name them itself with `keywords_of(params)`, as the neural ranker names its
        network's), with their values as registered. Imports the model's module."""
        cls = self.model_class()
        own = getattr(cls, "keywords_of", None)
        found = own(self.params) if own is not None else optional_keywords(cls)
        return {name: self.params.get(name, default) for name, default in found.items()}


def optional_keywords(cls, skip: tuple[str, ...] = ()) -> dict:
    """Keyword arguments with defaults of `cls`'s constructor, following `**kwargs` into the
    base classes' (name: default), minus `skip`."""
    import inspect

    found = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        for p in params:
            if p.default is not p.empty and p.name not in skip:
                found.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found
